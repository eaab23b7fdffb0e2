"""Emulator-only controls under /_emulator/ (not part of the real API): health, reset, operation logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Request, Response, json_response
from .common import operation_name

if TYPE_CHECKING:
    from ...app import Emulator


def health(app: Emulator, request: Request, **params: str) -> Response:
    return json_response({"status": "ok", "emulator": "Cloud Healthcare API (DICOM) emulator"})


def reset(app: Emulator, request: Request, **params: str) -> Response:
    app.reset()
    return json_response({})


def operation_logs(app: Emulator, request: Request, **params: str) -> Response:
    """The per-file log of an operation, which metadata.logsUrl points to (Cloud Logging stands in)."""
    name = str(operation_name(params))
    return json_response({"operation": name, "entries": app.engine.read_log(name)})
