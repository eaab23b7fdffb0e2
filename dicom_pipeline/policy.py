"""The error policy, in one place: transient → raise (the platform retries); permanent → dead-letter and return."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from . import cloud_storage, logs
from .config import Settings
from .errors import PermanentError, PipelineError, TransientError, classify

T = TypeVar("T")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run(kind: str, event_id: str, subject: dict[str, Any], work: Callable[[Settings], T]) -> T | None:
    """Run one event's work under the policy. `subject` names the object or message (never its contents)."""
    logs.configure()
    settings = Settings.from_env()  # a ConfigError is transient: raise so the event comes back once fixed
    try:
        return work(settings)
    except PermanentError as exc:
        _dead_letter(settings, kind, event_id, subject, exc)
        return None
    except TransientError as exc:
        logs.log(logging.WARNING, f"{kind}: transient failure, raising for a retry: {exc}", event_id=event_id,
                 object=subject.get("object"), operation=getattr(exc, "operation", None))
        raise
    except Exception as exc:  # an unexpected library error: retrying is the safe default
        error = classify(exc, kind)
        if isinstance(error, PermanentError):
            _dead_letter(settings, kind, event_id, subject, error)
            return None
        logs.log(logging.WARNING, f"{kind}: transient failure, raising for a retry: {error}", event_id=event_id,
                 object=subject.get("object"))
        raise error from exc


def _dead_letter(settings: Settings, kind: str, event_id: str, subject: dict[str, Any], exc: PermanentError) -> None:
    operation = getattr(exc, "operation", None)
    record = {"reason": str(exc), "kind": kind, "event_id": event_id, **subject, "operation": operation,
              "time": now()}
    if exc.reasons:  # each failed file's reason, from Cloud Logging (operation_logs)
        record["reasons"] = list(exc.reasons)
    key = hashlib.sha256(f"{kind}/{event_id}".encode()).hexdigest()[:32]
    name = f"dead-letter/{kind}/{key}.json"
    cloud_storage.replace_json(settings, settings.staging_bucket, name, record)  # same event → same record, no pile-up
    logs.log(logging.ERROR, f"{kind}: permanent failure, dead-lettered: {exc}", event_id=event_id,
             object=subject.get("object"), operation=operation,
             record=f"gs://{settings.staging_bucket}/{name}")


def with_operation(exc: PipelineError, operation: str | None) -> PipelineError:
    exc.operation = operation
    return exc
