"""PHI-safe structured logging: one JSON object per line with `severity`.

Only bucket/object names, UIDs, resource paths, event ids and operation names are ever passed in; callers
never hand DICOM attributes or file contents to these functions.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

logger = logging.getLogger("dicom_pipeline")
_ALLOWED_FIELDS = ("event_id", "object", "instance", "operation", "store", "table", "reason", "outcome", "record",
                  "batch")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"severity": _severity(record.levelno), "message": record.getMessage(),
                                 "logger": record.name}
        for field in _ALLOWED_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


def _severity(level: int) -> str:
    return {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
            logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL"}.get(level, "DEFAULT")


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at emit time (the platform's or a test's capture)."""

    _dicom_pipeline = True

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure() -> None:
    """Give the pipeline logger one stdout handler emitting JSON lines (Cloud Logging parses `severity`)."""
    if any(getattr(h, "_dicom_pipeline", False) for h in logger.handlers):
        return
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def log(level: int, message: str, **fields: Any) -> None:
    unknown = set(fields) - set(_ALLOWED_FIELDS)
    if unknown:  # a guard against someone passing a dataset attribute through
        raise ValueError(f"log fields not allowed: {sorted(unknown)}")
    logger.log(level, message, extra={k: v for k, v in fields.items() if v is not None})
