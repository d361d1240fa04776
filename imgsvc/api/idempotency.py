"""Idempotency-Key on upload: a retried upload gets the job the first one created.

The key is stored with a digest of what was uploaded (the CSV bytes and the options). The
same key with the same upload answers 200 with the body of the first answer; the same key
with anything else is a 409, since the client would otherwise believe a different file
was accepted.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..db import Database
from ..errors import ApiError
from ..models import JobStatus
from . import payloads
from .upload_form import Upload

HEADER = "idempotency-key"
MAX_LENGTH = 255


def header_key(request: Request, owner: str | None) -> str | None:
    """The request's Idempotency-Key, checked, as stored: scoped to the API key's owner, so
    two clients' keys never meet; None without one."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_LENGTH or not key.isprintable() or not key.isascii():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_LENGTH} printable ASCII characters",
        )
    return f"{owner}/{key}" if owner else key


def digest(upload: Upload) -> str:
    """What identifies an upload: its bytes and every option that shapes the job."""
    h = hashlib.sha256(upload.data)
    o = upload.options
    h.update(f"\0{o.quality}\0{o.max_dimension}\0{o.format}\0{upload.webhook_url}".encode())
    if o.progressive:  # added only when asked, so keys stored before the option still match
        h.update(b"\0progressive")
    if o.sizes:  # likewise
        h.update(f"\0sizes={','.join(map(str, o.sizes))}".encode())
    if not o.reuse:  # likewise
        h.update(b"\0no-reuse")
    return h.hexdigest()


async def earlier_answer(db: Database, key: str, upload_digest: str) -> Response | None:
    """The answer to replay for a key already used, a 409 if it was used for another upload,
    or None for a new key."""
    found = await db.job_by_idempotency_key(key)
    if found is None:
        return None
    job, earlier_digest = found
    if earlier_digest != upload_digest:
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"this Idempotency-Key was already used for a different upload "
            f"(request {job.id}); use a new key for a new file",
        )
    # The body is the first answer's, which was always given while the job was pending.
    answer = payloads.upload_answer(replace(job, status=JobStatus.PENDING))
    return JSONResponse(
        answer, 200, headers={"Location": answer["status_url"], "Idempotent-Replayed": "true"}
    )
