"""The route table: the real v1/v1beta1 REST paths, plus emulator-only controls under /_emulator/."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ApiError, Internal, MethodNotAllowed, NotFound
from .handlers import cloud_logging, controls, datasets, dicom_stores, dicomweb, metrics, operations
from .http import Request, Response, json_response

if TYPE_CHECKING:
    from ..app import Emulator

logger = logging.getLogger(__name__)

Handler = Callable[..., Any]

_LOCATION = "projects/{project}/locations/{location}"
_DATASET = _LOCATION + "/datasets/{dataset}"
_STORE = _DATASET + "/dicomStores/{store}"

# (method, path template, handler). {name} matches one path segment without ':'; {path} the rest.
API_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", _LOCATION + "/datasets", datasets.create),
    ("GET", _LOCATION + "/datasets", datasets.list_),
    ("GET", _DATASET, datasets.get),
    ("PATCH", _DATASET, datasets.patch),
    ("DELETE", _DATASET, datasets.delete),
    ("POST", _DATASET + "/dicomStores", dicom_stores.create),
    ("GET", _DATASET + "/dicomStores", dicom_stores.list_),
    ("GET", _STORE, dicom_stores.get),
    ("PATCH", _STORE, dicom_stores.patch),
    ("DELETE", _STORE, dicom_stores.delete),
    ("POST", _STORE + ":import", dicom_stores.import_),
    ("POST", _STORE + ":export", dicom_stores.export),
    ("GET", _STORE + ":getDICOMStoreMetrics", dicom_stores.metrics),
    ("POST", _STORE + ":setBlobStorageSettings", dicom_stores.set_blob_storage_settings),
    ("GET", _DATASET + "/operations", operations.list_),
    ("GET", _DATASET + "/operations/{operation}", operations.get),
    ("POST", _DATASET + "/operations/{operation}:cancel", operations.cancel),
    # Specific dicomWeb methods first: the generic DICOMweb routes below match any path.
    ("GET", _STORE + "/dicomWeb/studies/{study}:getStudyMetrics", metrics.study_metrics),
    ("GET", _STORE + "/dicomWeb/studies/{study}/series/{series}:getSeriesMetrics", metrics.series_metrics),
    ("GET", _STORE + "/dicomWeb/studies/{study}/series/{series}/instances/{instance}:getStorageInfo",
     metrics.storage_info),
    ("POST", _STORE + "/dicomWeb/studies/{study}:setBlobStorageSettings", dicom_stores.set_blob_storage_settings),
    ("GET", _STORE + "/dicomWeb/{path}", dicomweb.handle),
    ("POST", _STORE + "/dicomWeb/{path}", dicomweb.handle),
    ("DELETE", _STORE + "/dicomWeb/{path}", dicomweb.handle),
]

# Cloud Logging v2, served at the emulator's own URL: the operation logs as LogEntry values.
LOGGING_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "entries:list", cloud_logging.list_entries),
]

CONTROL_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "health", controls.health),
    ("POST", "reset", controls.reset),
    ("GET", "v1/" + _DATASET + "/operations/{operation}/logs", controls.operation_logs),
]


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    pattern = pattern.replace(r"\{path\}", r"(?P<path>.+)")
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/:]+)", pattern)
    return re.compile(pattern)


_API = [(method, _compile(template), handler) for method, template, handler in API_ROUTES]
_CONTROLS = [(method, _compile(template), handler) for method, template, handler in CONTROL_ROUTES]
_LOGGING = [(method, _compile(template), handler) for method, template, handler in LOGGING_ROUTES]
_VERSIONED = re.compile(r"/(v1|v1beta1)/(.*)", re.DOTALL)


def resolve(request: Request) -> tuple[Handler, dict[str, str]]:
    """Find the handler for a request and its path parameters; set request.version."""
    if request.path.startswith("/_emulator/"):
        table, rest = _CONTROLS, request.path[len("/_emulator/"):]
    elif request.path.startswith("/v2/"):
        table, rest = _LOGGING, request.path[len("/v2/"):]
    else:
        match = _VERSIONED.fullmatch(request.path)
        if not match:
            raise NotFound(f"unknown path {request.path!r}: API paths start with /v1/ or /v1beta1/")
        request.version, rest = match.group(1), match.group(2)
        table = _API
    allowed = []
    for method, pattern, handler in table:
        found = pattern.fullmatch(rest)
        if found:
            if method == request.method:
                return handler, found.groupdict()
            allowed.append(method)
    if allowed:
        raise MethodNotAllowed(f"method {request.method} is not supported on {request.path!r}")
    if table is _LOGGING:
        raise NotFound(f"unknown path {request.path!r}: API paths start with /v1/ or /v1beta1/; under /v2/ the"
                       " emulator serves Cloud Logging's entries:list only")
    raise NotFound(f"unknown path {request.path!r}")


def handle(emulator: Emulator, request: Request) -> Response:
    """Route a request; every failure becomes the Google JSON error envelope."""
    try:
        handler, params = resolve(request)
        return handler(emulator, request, **params)
    except ApiError as exc:
        return json_response(exc.envelope(), exc.http_status)
    except Exception as exc:  # keep serving whatever one request did
        logger.error("internal error on %s %s\n%s", request.method, request.path, traceback.format_exc())
        error = Internal(f"internal emulator error: {type(exc).__name__}")
        return json_response(error.envelope(), error.http_status)
