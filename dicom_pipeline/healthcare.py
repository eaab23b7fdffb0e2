"""Cloud Healthcare API calls through google-api-python-client, with lazily built, reused resources."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .batching import SharedCall
from .errors import TransientError, classify
from .names import BigQueryTableUri, DicomStoreName, GcsUri

_HTTP_TIMEOUT = 30
_FIRST_POLL, _STEADY_POLLING, _MAX_POLL = 0.1, 1.0, 2.0  # seconds


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
    body: dict[str, Any] = {"bigqueryDestination": {"tableUri": str(table), "writeDisposition": write_disposition}}
    if filter_uri is not None:
        body["filterConfig"] = {"resourcePathsGcsUri": str(filter_uri)}
    with _lend(endpoint) as api:
        return _execute(api.dicom_stores.export(name=str(store), body=body), "dicomStores.export")


def get_operation(endpoint: str | None, name: str) -> dict[str, Any]:
    with _lend(endpoint) as api:
        return _execute(api.operations.get(name=name), "operations.get")


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
