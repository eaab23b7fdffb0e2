"""One error hierarchy and the single rule that says whether a failure is worth a retry."""

from __future__ import annotations

import socket
from typing import Any


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""

    operation: str | None = None  # the long-running operation it concerns, when there is one
    # Each failed file's reason {source or resourceName, code, message}, read from Cloud Logging (operation_logs)
    reasons: tuple[dict[str, Any], ...] = ()


class TransientError(PipelineError):
    """Retrying later can succeed (429, 5xx, timeouts, connection errors, an operator-fixable setting)."""


class PermanentError(PipelineError):
    """Retrying cannot help (bad file, bad message, UID conflict): dead-letter and return."""


class ConfigError(TransientError):
    """A missing or malformed setting. Transient on purpose: an operator fixes it and the retry succeeds."""


# 4xx codes an operator can fix without changing the input (permissions, missing resources being provisioned).
_FIXABLE_CLIENT_CODES = {401, 403, 404, 408, 409, 429}
# google.rpc.Code values in a finished operation's `error.code` worth a retry:
# CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE.
_TRANSIENT_RPC_CODES = {1, 4, 8, 10, 13, 14}


def classify(exc: BaseException, what: str) -> PipelineError:
    """Turn a client library exception into a TransientError or PermanentError whose message says what failed."""
    if isinstance(exc, PipelineError):
        return exc
    status = _http_status(exc)
    if status is not None:
        detail = f"{what}: HTTP {status}: {_short(exc)}"
        if status >= 500 or status in _FIXABLE_CLIENT_CODES:
            return TransientError(detail)
        return PermanentError(detail)
    if isinstance(exc, TimeoutError | ConnectionError | socket.timeout | OSError):
        return TransientError(f"{what}: {type(exc).__name__}: {_short(exc)}")
    name = type(exc).__name__
    if any(word in name for word in ("Timeout", "Connection", "Transport", "ServiceUnavailable")):
        return TransientError(f"{what}: {name}: {_short(exc)}")
    return TransientError(f"{what}: unexpected {name}: {_short(exc)}")


def classify_operation_error(error: dict[str, Any], what: str, logs_url: str | None = None) -> PipelineError:
    """A finished long-running operation's `error` Status → Transient or Permanent."""
    code = int(error.get("code", 2) or 2)
    detail = f"{what}: operation failed (code {code}): {error.get('message', '')[:300]}"
    if logs_url:  # per-file reasons (e.g. a UID conflict) live in the operation log, not in the Status
        detail += f" (operation log: {logs_url})"
    return TransientError(detail) if code in _TRANSIENT_RPC_CODES else PermanentError(detail)


def _http_status(exc: BaseException) -> int | None:
    # googleapiclient.errors.HttpError has .resp.status; google.api_core exceptions have .code.
    resp = getattr(exc, "resp", None)
    if resp is not None and getattr(resp, "status", None) is not None:
        return int(resp.status)
    code = getattr(exc, "code", None)
    if isinstance(code, int) and 100 <= code < 600:
        return code
    return None


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "message", None) or str(exc)
    return str(reason)[:300]


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a client library exception, or of the one a PipelineError was classified from."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        status = _http_status(current)
        if status is not None:
            return status
        seen.add(id(current))
        current = current.__cause__
    return None
