"""API errors with the Google JSON error envelope and google.rpc codes."""

from __future__ import annotations

from typing import Any

# google.rpc.Code numbers, used in Operation.error and in the HTTP envelope's "status".
RPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


class ApiError(Exception):
    """An error the emulator reports the way the real API does."""

    http_status = 500
    status = "INTERNAL"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []

    @property
    def rpc_code(self) -> int:
        return RPC_CODES[self.status]

    def envelope(self) -> dict[str, Any]:
        """The synchronous HTTP error body: {"error": {code, message, status}}."""
        error: dict[str, Any] = {"code": self.http_status, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def rpc_status(self) -> dict[str, Any]:
        """The google.rpc.Status carried by a failed Operation."""
        status: dict[str, Any] = {"code": self.rpc_code, "message": self.message}
        if self.details:
            status["details"] = self.details
        return status


class InvalidArgument(ApiError):
    http_status, status = 400, "INVALID_ARGUMENT"


class FailedPrecondition(ApiError):
    http_status, status = 400, "FAILED_PRECONDITION"


class NotFound(ApiError):
    http_status, status = 404, "NOT_FOUND"


class MethodNotAllowed(ApiError):
    http_status, status = 405, "UNIMPLEMENTED"


class AlreadyExists(ApiError):
    http_status, status = 409, "ALREADY_EXISTS"


class Aborted(ApiError):
    http_status, status = 409, "ABORTED"


class PayloadTooLarge(ApiError):
    http_status, status = 413, "INVALID_ARGUMENT"


class UnsupportedMediaType(ApiError):
    http_status, status = 415, "INVALID_ARGUMENT"


class NotAcceptable(ApiError):
    http_status, status = 406, "INVALID_ARGUMENT"


class Unimplemented(ApiError):
    http_status, status = 501, "UNIMPLEMENTED"


class Internal(ApiError):
    http_status, status = 500, "INTERNAL"
