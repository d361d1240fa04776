"""Reuse across jobs: an image that has not changed since an earlier job of the same owner
made it with the same options gets that job's output again, neither decoded nor encoded.

What a job made from each URL is remembered per owner, options key (JobOptions.output_key)
and URL: the host's validators, the SHA-256 of the body, and the outcome. A later job asks
the host conditionally; a 304, or a body with the same SHA-256, means unchanged. The
earlier output is then copied under the new job's own name (a hard link in the data
folder, a copy inside the bucket), so every job owns exactly the files its names derive
from, and deleting one job never touches another's. The new job becomes the one
remembered, so a chain of daily re-runs never refers to a job retention has removed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from ..models import EarlierOutput, ImageRecord, Validators
from ..storage import Storage, output_names


@dataclass(frozen=True)
class Produced:
    """How one URL of a job ended, and what later jobs may reuse of it (None: nothing)."""

    record: ImageRecord
    remember: EarlierOutput | None = None


class SameBytes(Exception):
    """The body has the SHA-256 of the one an earlier output was made from."""


def sha256_hex(data: bytes, earlier: str | None = None) -> str:
    """The digest that says two downloads brought the same bytes; SameBytes if it is
    `earlier`. Run it in a thread (hashlib releases the GIL for a body)."""
    digest = hashlib.sha256(data).hexdigest()
    if digest == earlier:
        raise SameBytes
    return digest


async def reuse(
    storage: Storage, earlier: EarlierOutput, name: str, validators: Validators
) -> Produced | None:
    """The earlier outputs (the main one and one per size) stored again under `name` and
    the names its sizes derive from it, with `validators` now naming the image; None when
    one is gone (its job was deleted since it was looked up): then the image must be made
    again. A storage failure raises OSError."""
    source = earlier.outcome
    if source.output_name is None:
        return None
    renditions = source.renditions
    names = output_names(name, (r.size for r in renditions))
    if source.output_name != name:  # the same job redoing a URL already has them
        try:
            for old, new in zip(
                (source.output_name, *(r.output_name for r in renditions)), names, strict=True
            ):
                await storage.copy_image(old, new)
        except FileNotFoundError:
            return None
    outcome = replace(
        source,
        output_name=name,
        renditions=tuple(
            replace(r, output_name=n) for r, n in zip(renditions, names[1:], strict=True)
        ),
    )
    remember = replace(earlier, validators=validators, outcome=outcome)
    return Produced(replace(outcome, reused=True), remember)
