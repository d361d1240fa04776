"""Optional API keys: with IMGSVC_API_KEYS set, /api/* needs `Authorization: Bearer KEY`.

`/api/image/*` stays open: output images are linked from results CSVs that people open in
spreadsheets and shops, and their names are unguessable. Each key sees only the jobs it
created; a job stores a SHA-256 of its key (its owner), never the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import paths
from ..errors import ApiError

OPEN_PREFIXES = (paths.IMAGE.removesuffix("{filename}"),)


def owner_of_key(key: str) -> str:
    """The owner id stored with a key's jobs: a hash, so the database never holds a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def request_owner(request: Request) -> str | None:
    """The owner id of the key that made this request; None when API keys are off."""
    owner: str | None = getattr(request.state, "owner", None)
    return owner


def needs_key(path: str) -> bool:
    """Whether a path is behind the API keys."""
    return (path == "/api" or path.startswith("/api/")) and not path.startswith(OPEN_PREFIXES)


class ApiKeyAuth:
    """ASGI middleware refusing guarded requests without a known key (401)."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_key(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            key = self._key(scope)
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="imgsvc"'}
            await JSONResponse(exc.body(), exc.status, headers=headers)(scope, receive, send)
            return
        scope.setdefault("state", {})["owner"] = owner_of_key(key)
        await self.app(scope, receive, send)

    def _key(self, scope: Scope) -> str:
        header: bytes | None = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is None:
            raise _unauthorized("this endpoint needs an API key: send `Authorization: Bearer KEY`")
        scheme, _, key = header.decode("latin-1").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _unauthorized("the Authorization header must be `Bearer KEY`")
        if not self._known(key):
            raise _unauthorized("the API key is not valid")
        return key

    def _known(self, key: str) -> bool:
        # Equal-length digests compared with compare_digest, and every key always compared,
        # so the time taken says nothing about how much of a key was right, or which.
        digest = hashlib.sha256(key.encode()).digest()
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(known, digest)
        return found


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail)
