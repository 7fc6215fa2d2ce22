"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with its status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


@dataclass
class APIError(Exception):
    """An answer the client gets instead of a completion; ``message`` says what to do."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: int | None = None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": _TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return headers


def bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    """A 400 naming the field that is wrong."""
    return APIError(400, message, param, code)
