"""Cloud Storage calls of the functions: the JSON API through google-auth's urllib3 transport.

The functions make four to seven small Cloud Storage calls per instance (a ranged read, a copy, idempotency
and outcome records). Through google-cloud-storage each costs about 0.8 ms of client CPU, of which the
request itself is a third: the rest is Blob/ACL objects, retry wrappers, tracing spans and `requests`.
google-auth's `AuthorizedHttp` (credentials, token refresh) over a urllib3 pool (keep-alive, thread safety,
retries) makes the same JSON API requests for about 0.3 ms (bench/gcs_calls.py). `client()` keeps the full
library for the CLI.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from .errors import classify

DICM_OFFSET = 128
_PRODUCTION_ENDPOINT = "https://storage.googleapis.com"
_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
# Retried inside the call, as google-cloud-storage does: the conditions make every call here idempotent
# (conditional writes, content-named copies and filters, reads). What is still failing after that goes up
# as a TransientError and the platform redelivers the event.
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class StorageHttpError(Exception):
    """A JSON API answer other than success; `code` is the HTTP status (read by errors.classify)."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"HTTP {code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class _Api:
    http: Any  # google.auth.transport.urllib3.AuthorizedHttp
    base: str  # scheme://host, no trailing slash


@functools.cache
def _api(emulator_host: str | None) -> _Api:
    import google.auth

    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return authorized(AnonymousCredentials(), emulator_host if "://" in emulator_host else f"http://{emulator_host}")
    credentials, _ = google.auth.default(scopes=_SCOPES)
    return authorized(credentials, _PRODUCTION_ENDPOINT)


def authorized(credentials: Any, base: str) -> _Api:
    """google-auth's AuthorizedHttp over a urllib3 PoolManager, for the JSON API at `base`.

    A PoolManager and not one pool for the API's host (a little cheaper per call): the credentials refresh
    their token through the same object, from the metadata server or a token endpoint on another host.
    """
    import urllib3
    from google.auth.transport.urllib3 import AuthorizedHttp

    retries = urllib3.Retry(total=4, connect=3, read=2, status=3, backoff_factor=0.25,
                            status_forcelist=_RETRY_STATUSES, allowed_methods=None, raise_on_status=False,
                            respect_retry_after_header=True)
    # One keep-alive connection per concurrent request (gen2 serves up to THREADS at once, copies run 8 wide).
    pool = urllib3.PoolManager(maxsize=128, retries=retries, timeout=urllib3.Timeout(connect=10, read=60))
    return _Api(AuthorizedHttp(credentials, http=pool), base.rstrip("/"))


def _object_path(bucket: str, name: str) -> str:
    return f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"


def _call(settings: Any, what: str, method: str, path: str, params: dict[str, Any] | None = None,
          body: bytes | None = None, headers: dict[str, str] | None = None, **options: Any) -> Any:
    """The urllib3 response (any status); a connection failure left after the retries is classified."""
    api = _api(settings.storage_emulator_host)
    url = f"{api.base}{path}?{urlencode(params)}" if params else f"{api.base}{path}"
    try:
        return api.http.request(method, url, body=body, headers=headers, **options)
    except Exception as exc:
        raise classify(exc, what) from exc


def _fail(response: Any) -> StorageHttpError:
    try:
        reason = json.loads(response.data)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        reason = response.data[:200].decode("utf-8", "replace").strip() or "no detail"
    return StorageHttpError(response.status, str(reason))


@functools.cache
def client(emulator_host: str | None, project: str | None) -> Any:
    """The full google-cloud-storage client (the CLI's calls), built once per endpoint."""
    # google-cloud-storage 3.x fetches each bucket's metadata in a background thread only to label tracing
    # spans: an extra request per bucket, for traces we do not emit.
    os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
    import google.cloud.storage as storage

    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        emulated = storage.Client(project=project or "local", credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": emulator_host})
        emulated._http.trust_env = False  # a loopback emulator is never reached through a proxy
        return emulated
    return storage.Client(project=project)


def read_preamble_marker(settings: Any, bucket: str, name: str, generation: str | None) -> bytes | None:
    """Bytes 128–131 of the object (a ranged read; a huge object costs four bytes).

    None when the event's generation no longer exists (overwritten or deleted since): nothing to import,
    and retrying would never help; the newer generation has an event of its own.
    """
    what = f"reading gs://{bucket}/{name}"
    params = {"alt": "media", **({"generation": generation} if generation else {})}
    # The stored bytes, as google-cloud-storage's raw_download: a gzip-encoded object is not decompressed.
    response = _call(settings, what, "GET", _object_path(bucket, name), params,
                     headers={"Range": f"bytes={DICM_OFFSET}-{DICM_OFFSET + 3}", "Accept-Encoding": "gzip"},
                     decode_content=False)
    if response.status == 416:  # shorter than 129 bytes: no marker at all
        return b""
    if response.status == 404 and generation:
        return None
    if response.status not in (200, 206):
        raise classify(_fail(response), what)
    data: bytes = response.data
    # A server that ignores Range answers 200 with the whole object.
    return data[DICM_OFFSET:DICM_OFFSET + 4] if response.status == 200 else data[:4]


def copy(settings: Any, bucket: str, name: str, generation: str | None, dest_bucket: str, dest_name: str) -> None:
    what = f"copying gs://{bucket}/{name} to staging"
    path = f"{_object_path(bucket, name)}/copyTo/b/{quote(dest_bucket, safe='')}/o/{quote(dest_name, safe='')}"
    response = _call(settings, what, "POST", path, {"sourceGeneration": generation} if generation else None,
                     body=b"{}", headers={"Content-Type": "application/json"})
    if response.status != 200:
        raise classify(_fail(response), what)


def _upload(settings: Any, bucket: str, name: str, data: bytes, content_type: str,
            if_generation_match: int | None) -> int | None:
    """Write the object; its new generation, or None when the precondition failed (412).

    A multipart upload (metadata, then media), as google-cloud-storage sends it: fake-gcs-server ignores
    ifGenerationMatch on a media-only upload.
    """
    params: dict[str, Any] = {"uploadType": "multipart"}
    if if_generation_match is not None:
        params["ifGenerationMatch"] = if_generation_match
    metadata = json.dumps({"name": name, "contentType": content_type})
    boundary = f"=={secrets.token_hex(16)}=="  # random: no payload can contain it by chance
    body = (f"--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n"
            f"--{boundary}\r\ncontent-type: {content_type}\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    what = f"writing gs://{bucket}/{name}"
    response = _call(settings, what, "POST", f"/upload/storage/v1/b/{quote(bucket, safe='')}/o", params, body=body,
                     headers={"Content-Type": f'multipart/related; boundary="{boundary}"'})
    if response.status == 412:
        return None
    if response.status != 200:
        raise classify(_fail(response), what)
    return int(json.loads(response.data)["generation"])


def create_if_absent(settings: Any, bucket: str, name: str, payload: dict[str, Any]) -> int | None:
    """Create the object only if it does not exist; its generation, or None if it already existed."""
    return _upload(settings, bucket, name, json.dumps(payload).encode(), "application/json", 0)


def read_json(settings: Any, bucket: str, name: str) -> tuple[dict[str, Any], int] | None:
    """The object's JSON and its generation, or None if it does not exist."""
    what = f"reading gs://{bucket}/{name}"
    response = _call(settings, what, "GET", _object_path(bucket, name), {"alt": "media"})
    if response.status == 404:
        return None
    if response.status != 200:
        raise classify(_fail(response), what)
    generation = response.headers.get("x-goog-generation")
    if generation is None:
        raise classify(StorageHttpError(502, "media download without an x-goog-generation header"), what)
    return json.loads(response.data), int(generation)


def replace_json(settings: Any, bucket: str, name: str, payload: dict[str, Any],
                 if_generation_match: int | None = None) -> int | None:
    """Write the object (only over that generation when given); the new generation, or None if it moved on."""
    return _upload(settings, bucket, name, json.dumps(payload).encode(), "application/json", if_generation_match)


def delete(settings: Any, bucket: str, name: str, if_generation_match: int | None = None) -> None:
    """Delete the object (only that generation when given); gone already or moved on is fine."""
    what = f"deleting gs://{bucket}/{name}"
    params = {"ifGenerationMatch": if_generation_match} if if_generation_match is not None else None
    response = _call(settings, what, "DELETE", _object_path(bucket, name), params)
    if response.status not in (200, 204, 404, 412):
        raise classify(_fail(response), what)


def write_text(settings: Any, bucket: str, name: str, text: str) -> None:
    _upload(settings, bucket, name, text.encode(), "text/plain", None)
