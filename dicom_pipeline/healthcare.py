"""Cloud Healthcare API calls through google-api-python-client, with lazily built, reused resources."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import logs
from .batching import SharedCall
from .errors import TransientError, classify, http_status
from .names import BigQueryTableUri, DicomStoreName, GcsUri

_HTTP_TIMEOUT = 30
_FIRST_POLL, _STEADY_POLLING, _MAX_POLL = 0.1, 1.0, 2.0  # seconds
# Idempotent calls (operations.get/list) are retried in-process this many times, backing off from 0.2 s:
# one transient fault then costs one poll, not every delivery waiting on it.
_READ_ATTEMPTS, _FIRST_BACKOFF, _MAX_BACKOFF = 5, 0.2, 3.2


_local = threading.local()


def build(endpoint: str | None, service: str = "healthcare", version: str = "v1") -> Any:
    """A discovery client; anonymous against an emulator endpoint, default credentials otherwise."""
    import google_auth_httplib2
    import httplib2
    from googleapiclient import discovery

    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        credentials: Any = AnonymousCredentials()
        options: dict[str, str] | None = {"api_endpoint": endpoint}
    else:
        import google.auth

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        options = None
    # A bounded socket timeout turns a hung connection into a retryable error instead of a stuck function.
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=_HTTP_TIMEOUT))
    return discovery.build(service, version, http=http, client_options=options, cache_discovery=False,
                           static_discovery=True)


def _execute(request: Any, what: str) -> dict[str, Any]:
    try:
        return request.execute(num_retries=0)
    except Exception as exc:
        raise classify(exc, what) from exc


def _read(endpoint: str | None, call: Any, what: str) -> dict[str, Any]:
    """An idempotent call (`call(clients)` builds the request), retried with backoff on a transient failure;
    one WARNING line per retry. Never used for calls that start work (import, export): those are not
    idempotent, and repeating one could do the work twice."""
    delay = _FIRST_BACKOFF
    for attempt in range(1, _READ_ATTEMPTS + 1):
        try:
            with _lend(endpoint) as api:
                return _execute(call(api), what)
        except TransientError as exc:
            if attempt == _READ_ATTEMPTS:
                raise
            logs.log(logging.WARNING, f"{what}: attempt {attempt} of {_READ_ATTEMPTS} failed, retrying in "
                     f"{delay:.1f} s: {exc}", outcome="retry")
            time.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)
    raise AssertionError("unreachable")


def was_refused(exc: BaseException) -> bool:
    """True when a failed call certainly did nothing: the API answered with a refusal (4xx, 429 included) or
    no connection was ever made. A 5xx, a timeout or a dropped connection leaves the outcome unknown: the
    request may have been carried out and only its answer lost."""
    status = http_status(exc)
    if status is not None:
        return 400 <= status < 500
    from urllib3.exceptions import NewConnectionError

    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop()
        if isinstance(current, ConnectionRefusedError | NewConnectionError):
            return True
        seen.extend(e for e in (current.__cause__, getattr(current, "reason", None)) if isinstance(e, BaseException))
    return False


@dataclass
class _Clients:
    dicom_stores: Any
    operations: Any


def _new_clients(endpoint: str | None) -> _Clients:
    # Each nested resource call builds every method of the discovery document again (milliseconds of CPU,
    # bench/README.md): the two resources used here are built once and reused, never per call.
    api = build(endpoint).projects().locations().datasets()
    return _Clients(api.dicomStores(), api.operations())


def _thread_clients(endpoint: str | None) -> _Clients:
    """Built once per thread, for a caller with one thread (the CLI)."""
    cache = getattr(_local, "clients", None)
    if cache is None:
        cache = _local.clients = {}
    if endpoint not in cache:
        cache[endpoint] = _new_clients(endpoint)
    return cache[endpoint]


def dicom_stores(endpoint: str | None) -> Any:
    return _thread_clients(endpoint).dicom_stores


def operations(endpoint: str | None) -> Any:
    return _thread_clients(endpoint).operations


_free: dict[str | None, list[_Clients]] = {}
_free_guard = threading.Lock()


@contextmanager
def _lend(endpoint: str | None) -> Iterator[_Clients]:
    """Built resources for one call, lent to one thread at a time (httplib2 is not thread-safe) and then
    returned: a function instance builds as many as it has calls in flight, not one per request thread
    (gen2 runs up to 80)."""
    with _free_guard:
        free = _free.setdefault(endpoint, [])
        clients = free.pop() if free else None
    if clients is None:
        clients = _new_clients(endpoint)
    try:
        yield clients
    finally:
        with _free_guard:
            _free[endpoint].append(clients)


def import_dicom(endpoint: str | None, store: DicomStoreName, source: GcsUri,
                 storage_class: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"gcsSource": {"uri": str(source)}}
    if storage_class:
        body["blobStorageSettings"] = {"blobStorageClass": storage_class}
    with _lend(endpoint) as api:
        return _execute(api.dicom_stores.import_(name=str(store), body=body), "dicomStores.import")


def export_to_bigquery(endpoint: str | None, store: DicomStoreName, table: BigQueryTableUri,
                       write_disposition: str, filter_uri: GcsUri | None) -> dict[str, Any]:
    """Start an export, sending the request at most once (see _send_once); the caller tells a refusal from an
    unknown outcome with was_refused()."""
    body: dict[str, Any] = {"bigqueryDestination": {"tableUri": str(table), "writeDisposition": write_disposition}}
    if filter_uri is not None:
        body["filterConfig"] = {"resourcePathsGcsUri": str(filter_uri)}
    with _lend(endpoint) as api:
        return _send_once(api.dicom_stores.export(name=str(store), body=body), "dicomStores.export")


class ApiHttpError(Exception):
    """An HTTP answer other than success; `code` is the status (read by errors.classify)."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"HTTP {code}: {reason}")
        self.code = code
        self.reason = reason


_once_pools: dict[int, Any] = {}


def _send_once(request: Any, what: str) -> dict[str, Any]:
    """Send a request that starts work exactly once. httplib2 (under googleapiclient) sends a request again,
    POST included, when the connection drops before the answer (BadStatusLine on a first try, whatever its
    RETRIES): a lost answer would then start a second export. urllib3 only retries a connection that was
    never made, and POST is not in its read-retry methods."""
    import urllib3
    from google.auth.transport.urllib3 import AuthorizedHttp

    credentials = request.http.credentials
    http = _once_pools.get(id(credentials))
    if http is None:
        pool = urllib3.PoolManager(maxsize=16, retries=urllib3.Retry(total=2, connect=2, read=0, status=0,
                                                                      other=0, redirect=0),
                                   timeout=urllib3.Timeout(connect=10, read=_HTTP_TIMEOUT))
        http = _once_pools.setdefault(id(credentials), AuthorizedHttp(credentials, http=pool))
    try:
        response = http.request(request.method, request.uri, body=request.body, headers=request.headers)
    except Exception as exc:
        raise classify(exc, what) from exc
    if response.status >= 300:
        try:
            reason = json.loads(response.data)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            reason = response.data[:200].decode("utf-8", "replace").strip() or "no detail"
        failure = ApiHttpError(response.status, str(reason))
        raise classify(failure, what) from failure
    return json.loads(response.data)


def get_operation(endpoint: str | None, name: str) -> dict[str, Any]:
    return _read(endpoint, lambda api: api.operations.get(name=name), "operations.get")


def list_operations(endpoint: str | None, dataset: str) -> list[dict[str, Any]]:
    """Every operation of the dataset (all pages)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = _read(endpoint, lambda api, token=token: api.operations.list(name=dataset, pageSize=1000,
                                                                             pageToken=token), "operations.list")
        found.extend(page.get("operations", []))
        token = page.get("nextPageToken")
        if not token:
            return found


def wait(endpoint: str | None, operation: dict[str, Any], bound: float) -> dict[str, Any]:
    """Poll until `done` or `bound` seconds pass; returns the last operation seen (without `done` if pending)."""
    start = time.monotonic()
    deadline = start + bound
    delay = _FIRST_POLL
    while not operation.get("done"):
        if time.monotonic() >= deadline:
            return operation
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        # Every 0.1 s for the first second: a batch's operation usually ends within it, and every request of
        # the batch waits for the poll that sees it done. Then doubling to 2 s: a long import or export is
        # polled a few times a minute, not ten times a second.
        if time.monotonic() - start >= _STEADY_POLLING:
            delay = min(delay * 2, _MAX_POLL)
        if "name" not in operation:
            raise TransientError("the API returned an operation without a name")
        operation = get_operation(endpoint, operation["name"])
    return operation


_polls: SharedCall[dict[str, Any]] = SharedCall()


def wait_shared(endpoint: str | None, operation: dict[str, Any], bound: float) -> dict[str, Any]:
    """wait(), with one poller for every caller following the same operation (a batch's messages or objects)."""
    return _polls.call((endpoint, operation.get("name")), lambda: wait(endpoint, operation, bound))
