"""The real reason a file failed: read from Cloud Logging, where the Healthcare API writes it.

A failed import's Operation says only "N of M files failed"; each file's reason is a log entry
(`jsonPayload` ImportDicomLogEntry {source, error}; exports: ExportDicomLogEntry {resourceName, error}) with
the operation's id in `operation.id`. A function whose operation failed permanently lists those entries
(Cloud Logging v2 `entries:list`) and puts the reasons into the dead letter and its ERROR line. Entries may
arrive after the operation ends, so it polls for a bounded time, and falls back to the operation's log link,
saying so. The same code reads the local stack's emulator (LOGGING_API_ENDPOINT) and Google Cloud, where it
reads the log view HEALTHCARE_LOG_VIEW (restricted to healthcare_dicom_store entries) when it is set.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from . import healthcare, logs
from .config import Settings
from .errors import PermanentError, PipelineError, classify, classify_operation_error

RESOURCE_TYPE = "healthcare_dicom_store"
_PAGE = 50  # reasons kept per failure: a dead letter names a file, a batch's first 50 are plenty
_SHOWN = 5  # reasons spelled out in the message; the record keeps them all
_FIRST_POLL, _MAX_POLL = 0.5, 4.0  # seconds: entries:list has a read quota of 60 requests a minute


def failure(settings: Settings, operation: dict[str, Any], what: str, source: str | None = None) -> PipelineError:
    """The error of a failed operation. A permanent one carries the per-file reasons found in Cloud Logging
    (`reasons` on the error, and in its message); without them, the log link and why they are missing."""
    error = operation.get("error") or {}
    logs_url = operation.get("metadata", {}).get("logsUrl")
    classified = classify_operation_error(error, what, logs_url)
    if not isinstance(classified, PermanentError):  # a retry comes: no need to wait for the reason
        return classified
    reasons, missing = find_reasons(settings, operation, source)
    if not reasons:
        classified = PermanentError(f"{classified}; the per-file reason is not in Cloud Logging: {missing}")
    else:
        shown = "; ".join(_describe(reason, source) for reason in reasons[:_SHOWN])
        more = f" (and {len(reasons) - _SHOWN} more)" if len(reasons) > _SHOWN else ""
        classified = PermanentError(f"{what} failed: {shown}{more}")
    classified.reasons = tuple(reasons)
    return classified


def _describe(reason: dict[str, Any], source: str | None) -> str:
    text = f"{reason['message']} (code {reason['code']})"
    subject = reason.get("source") or reason.get("resourceName")
    return text if not subject or subject == source else f"{subject}: {text}"


def log_filter(operation_name: str, created: str | None = None, source: str | None = None) -> str:
    """The entries of one operation (and of one file of it): `operation.id` holds the operation's id."""
    operation_id = operation_name.rsplit("/", 1)[-1]
    parts = [f'resource.type="{RESOURCE_TYPE}"', "severity>=ERROR",
             f'(operation.id="{_quote(operation_id)}" OR operation.id="{_quote(operation_name)}")']
    if created:  # narrows the search to the operation's lifetime
        parts.append(f'timestamp>="{_quote(created)}"')
    if source:
        parts.append(f'jsonPayload.source="{_quote(source)}"')
    return " AND ".join(parts)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def resource_names(settings: Settings, operation_name: str) -> list[str]:
    """The log view when the deployment made one (read access to it only), else the operation's project."""
    if settings.healthcare_log_view:
        return [settings.healthcare_log_view]
    return ["/".join(operation_name.split("/")[:2])]


def find_reasons(settings: Settings, operation: dict[str, Any],
                 source: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """(reasons, why there are none): each reason {source or resourceName, code, message}."""
    name = operation.get("name")
    if not name:
        return [], "the operation has no name"
    query = {"resourceNames": resource_names(settings, name), "orderBy": "timestamp asc", "pageSize": _PAGE,
             "filter": log_filter(name, operation.get("metadata", {}).get("createTime"), source)}
    deadline = time.monotonic() + settings.operation_log_wait_seconds
    delay = _FIRST_POLL
    try:
        while True:
            found = _list_entries(settings.logging_api_endpoint, query)
            reasons = [_reason(entry) for entry in found if isinstance(entry, dict)]
            if reasons:
                return reasons, ""
            if time.monotonic() >= deadline:
                return [], f"no entry for operation {name} within {settings.operation_log_wait_seconds:g} s"
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _MAX_POLL)
    except Exception as exc:  # no reason is no reason to lose the dead letter: say why and keep the link
        error = classify(exc, "reading the operation's entries from Cloud Logging (entries:list)")
        logs.log(logging.WARNING, str(error), operation=name)
        return [], str(error)


_clients: dict[str | None, Any] = {}
_client_lock = threading.Lock()


def _list_entries(endpoint: str | None, query: dict[str, Any]) -> list[Any]:
    """One entries:list call. The client is built once per endpoint (~50 ms of CPU each time) and shared
    under a lock (httplib2 is not thread-safe): reads happen only for failed operations, and are short."""
    with _client_lock:
        if endpoint not in _clients:
            _clients[endpoint] = healthcare.build(endpoint, "logging", "v2").entries()
        answer = _clients[endpoint].list(body=query).execute(num_retries=0)
    entries = answer.get("entries", [])
    return entries if isinstance(entries, list) else []


def _reason(entry: dict[str, Any]) -> dict[str, Any]:
    payload = entry.get("jsonPayload") or {}
    error = payload.get("error") or {}
    reason: dict[str, Any] = {"code": int(error.get("code", 2) or 2),
                              "message": str(error.get("message") or entry.get("textPayload") or "")[:500]}
    for key in ("source", "resourceName"):
        if payload.get(key):
            reason[key] = str(payload[key])
    return reason
