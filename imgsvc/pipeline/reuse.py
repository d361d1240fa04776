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
from ..storage import Storage


@dataclass(frozen=True)
class Produced:
    """How one URL of a job ended, and what later jobs may reuse of it (None: nothing)."""

    record: ImageRecord
    remember: EarlierOutput | None = None


def sha256_hex(data: bytes) -> str:
    """The digest that says two downloads brought the same bytes (run it in a thread)."""
    return hashlib.sha256(data).hexdigest()


async def reuse(
    storage: Storage, earlier: EarlierOutput, name: str, validators: Validators
) -> Produced | None:
    """The earlier output stored again as `name`, with `validators` now naming the image;
    None when that output is gone (its job was deleted since it was looked up): then the
    image must be made again. A storage failure raises OSError."""
    source = earlier.outcome.output_name
    if source is None:
        return None
    if source != name:  # the same job redoing a URL already has it
        try:
            await storage.copy_image(source, name)
        except FileNotFoundError:
            return None
    outcome = replace(earlier.outcome, output_name=name)
    remember = replace(earlier, validators=validators, outcome=outcome)
    return Produced(replace(outcome, reused=True), remember)
