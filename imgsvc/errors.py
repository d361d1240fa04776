"""One exception type for every refusal the API makes, rendered as one JSON shape."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the service refuses: an HTTP status, a machine code and a human sentence."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The error as the API shows it: `detail`, `code`, and `errors` when there are several."""
        body: dict[str, Any] = {"detail": self.detail, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} was not found")


def bad_field(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{name}: {message}")
