"""Cloud Healthcare API calls through google-api-python-client, with a lazily built, cached service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import TransientError, classify
from .names import BigQueryTableUri, DicomStoreName, GcsUri

_HTTP_TIMEOUT = 30


_local = threading.local()


def service(endpoint: str | None) -> Any:
    """The healthcare v1 service, built once per thread (httplib2 is not thread-safe; gen2 runs threads)."""
    return _cached(("service", endpoint), lambda: _build(endpoint))


def _cached(key: tuple[str, str | None], make: Any) -> Any:
    cache = getattr(_local, "resources", None)
    if cache is None:
        cache = _local.resources = {}
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _build(endpoint: str | None) -> Any:
    """Anonymous against an emulator endpoint, default credentials otherwise."""
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
    return discovery.build("healthcare", "v1", http=http, client_options=options, cache_discovery=False,
                           static_discovery=True)


def _execute(request: Any, what: str) -> dict[str, Any]:
    try:
        return request.execute(num_retries=0)
    except Exception as exc:
        raise classify(exc, what) from exc


def dicom_stores(endpoint: str | None) -> Any:
    """For a caller with one thread (the CLI). Each nested resource call builds every method of the
    discovery document again, so the resource is built once per thread, not per call."""
    return _cached(("dicomStores", endpoint),
                   lambda: service(endpoint).projects().locations().datasets().dicomStores())


def operations(endpoint: str | None) -> Any:
    return _cached(("operations", endpoint), lambda: service(endpoint).projects().locations().datasets().operations())


@dataclass
class _Clients:
    dicom_stores: Any
    operations: Any


_free: dict[str | None, list[_Clients]] = {}
_free_guard = threading.Lock()


@contextmanager
def _lend(endpoint: str | None) -> Iterator[_Clients]:
    """Built resources for one call, lent to one thread at a time (httplib2 is not thread-safe) and then
    returned: a function instance builds as many as it has calls in flight, not one per request thread
    (gen2 runs up to 80; each build parses the discovery document and costs ~10 ms of CPU)."""
    with _free_guard:
        free = _free.setdefault(endpoint, [])
        clients = free.pop() if free else None
    if clients is None:
        api = _build(endpoint).projects().locations().datasets()
        clients = _Clients(api.dicomStores(), api.operations())
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
    deadline = time.monotonic() + bound
    delay = 0.1
    while not operation.get("done"):
        if time.monotonic() >= deadline:
            return operation
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)  # a burst's operations queue: fewer polls, each a request the API serves
        if "name" not in operation:
            raise TransientError("the API returned an operation without a name")
        operation = get_operation(endpoint, operation["name"])
    return operation
