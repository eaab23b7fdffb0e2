"""Cloud Logging v2 `entries:list`: the operation logs as the real API's log entries (see jobs/log_entries.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import InvalidArgument
from ...jobs import log_entries
from ..http import Request, Response, json_response
from .common import page, without_empty

if TYPE_CHECKING:
    from ...app import Emulator

_DEFAULT_PAGE_SIZE = "50"  # Cloud Logging's default; its maximum (1000) is the emulator's too


def list_entries(app: Emulator, request: Request, **params: str) -> Response:
    body = request.json()
    names = body.get("resourceNames") or [f"projects/{p}" for p in body.get("projectIds") or []]
    if not isinstance(names, list) or not names:
        raise InvalidArgument("resourceNames is required: projects/PROJECT or a log view's full name")
    names = [log_entries.check_resource_name(name) for name in names]
    order = str(body.get("orderBy") or "timestamp asc").strip().lower()
    if order not in ("timestamp asc", "timestamp desc"):
        raise InvalidArgument(f"invalid orderBy {body.get('orderBy')!r}: use 'timestamp asc' or 'timestamp desc'")
    query = log_entries.parse_filter(str(body.get("filter") or ""))
    entries = [e for e in app.engine.log_entries(query.operations) if log_entries.in_scope(e, names) and query.test(e)]
    if order == "timestamp desc":
        entries.reverse()
    size = body.get("pageSize")
    items, token = page(entries, str(size) if size is not None else _DEFAULT_PAGE_SIZE, body.get("pageToken"))
    return json_response(without_empty({"entries": items, "nextPageToken": token}))
