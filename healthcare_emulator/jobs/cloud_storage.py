"""Cloud Storage access for import: gs:// wildcard patterns and object reads through google-cloud-storage.

With STORAGE_EMULATOR_HOST (fake-gcs-server locally) the client uses that endpoint and no credentials;
otherwise it reads real Cloud Storage with application default credentials.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from ..errors import InvalidArgument
from ..names import parse_gcs_uri

_WILDCARDS = re.compile(r"\*\*|\*|\?")
_DOUBLE_STAR_SUFFIX = re.compile(r"(\.[^/*?]*)?")


@dataclass(frozen=True)
class ObjectPattern:
    """A `gcsSource.uri` split into bucket, literal listing prefix and a matcher for object names."""

    uri: str
    bucket: str
    prefix: str
    regex: re.Pattern[str] | None  # None: the URI names one object exactly

    def matches(self, object_name: str) -> bool:
        return self.regex.fullmatch(object_name) is not None if self.regex else object_name == self.prefix


def parse_object_pattern(uri: str) -> ObjectPattern:
    """Validate a gs:// URI with the import wildcard rules.

    `*` matches 0+ characters other than `/`; `?` exactly one such character; `**` matches 0+
    characters including `/`, only at the end of the path, optionally followed by an extension
    (`dir/**.dcm`), and only as the sole wildcard. Everything else is rejected.
    """
    bucket, name = parse_gcs_uri(uri, "gcsSource.uri")
    if not name:
        raise InvalidArgument(f"gcsSource.uri {uri!r} names no object: add an object name or a wildcard such as *")
    tokens = _WILDCARDS.findall(name)
    if not tokens:
        return ObjectPattern(uri, bucket, name, None)
    if "**" in tokens:
        head, _, tail = name.partition("**")
        if len(tokens) > 1 or not _DOUBLE_STAR_SUFFIX.fullmatch(tail):
            raise InvalidArgument(
                f"invalid wildcard in gcsSource.uri {uri!r}: '**' must be the only wildcard and come at the end"
                " of the path, optionally followed by an extension such as '**.dcm'"
            )
        return ObjectPattern(uri, bucket, head, re.compile(re.escape(head) + ".*" + re.escape(tail), re.DOTALL))
    parts = []
    position = 0
    for match in _WILDCARDS.finditer(name):
        parts.append(re.escape(name[position:match.start()]))
        parts.append("[^/]*" if match.group() == "*" else "[^/]")
        position = match.end()
    parts.append(re.escape(name[position:]))
    prefix = name[: _WILDCARDS.search(name).start()]  # type: ignore[union-attr]
    return ObjectPattern(uri, bucket, prefix, re.compile("".join(parts), re.DOTALL))


def storage_client(emulator_host: str | None):  # type: ignore[no-untyped-def]
    """A google-cloud-storage client: anonymous against an emulator, default credentials otherwise."""
    import google.cloud.storage as storage  # imported lazily: only Cloud Storage work needs it

    if not emulator_host:
        return storage.Client()
    from google.auth.credentials import AnonymousCredentials

    endpoint = emulator_host if "://" in emulator_host else f"http://{emulator_host}"
    return storage.Client(project="emulator", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": endpoint})


@dataclass(frozen=True)
class SourceObject:
    name: str
    size: int


class GcsReader:
    """Lists and reads objects; one storage client per thread (their HTTP sessions are not shared)."""

    list_page_size = 1000  # objects per listing request (the JSON API's maximum)

    def __init__(self, emulator_host: str | None = None, *, from_env: bool = True) -> None:
        # Captured once, so the emulator keeps reading the same Cloud Storage whatever the env does later.
        # from_env=False: exactly `emulator_host` (None = real Cloud Storage), as import workers need.
        env_host = os.environ.get("STORAGE_EMULATOR_HOST") if from_env else None
        self._emulator_host = emulator_host or env_host or None
        self._local = threading.local()

    @property
    def emulator_host(self) -> str | None:
        return self._emulator_host

    def _client(self):  # type: ignore[no-untyped-def]
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = storage_client(self._emulator_host)
        return client

    def list_matching(self, pattern: ObjectPattern) -> list[SourceObject]:
        from google.api_core import exceptions

        try:
            if self._emulator_host and pattern.regex is not None:
                return self._list_from_emulator(pattern)
            client = self._client()
            if pattern.regex is None:
                blob = client.bucket(pattern.bucket).get_blob(pattern.prefix)
                return [] if blob is None else [SourceObject(blob.name, blob.size or 0)]
            blobs = client.list_blobs(pattern.bucket, prefix=pattern.prefix or None)
            return [SourceObject(b.name, b.size or 0) for b in blobs if pattern.matches(b.name)]
        except exceptions.NotFound:
            from ..errors import NotFound

            raise NotFound(f"Cloud Storage bucket gs://{pattern.bucket} not found") from None

    def _list_from_emulator(self, pattern: ObjectPattern) -> list[SourceObject]:
        """The JSON API listing, page by page, on the kept-alive connection (as _get_from_emulator says why)."""
        found: list[SourceObject] = []
        token = None
        while True:
            query = {"prefix": pattern.prefix, "maxResults": str(self.list_page_size)}
            if token:
                query["pageToken"] = token
            page = json.loads(self._get_from_emulator(f"/storage/v1/b/{quote(pattern.bucket, safe='')}/o?"
                                                      f"{urlencode(query)}"))
            found += [SourceObject(item["name"], int(item.get("size") or 0)) for item in page.get("items", ())
                      if pattern.matches(item["name"])]
            token = page.get("nextPageToken")
            if not token:
                return found

    def read(self, bucket: str, name: str) -> bytes:
        if self._emulator_host:
            return self._read_from_emulator(bucket, name)
        return self._client().bucket(bucket).blob(name).download_as_bytes(checksum=None)

    def read_exact_from_emulator(self, bucket: str, name: str) -> bytes | None:
        """One exact object's bytes from the storage emulator, or None when it (or its bucket) does not exist.

        One GET of the media answers both questions an import of one object asks (is it there, what are
        its bytes); a metadata GET before the read was a third of such an import's requests. Other errors
        raise, as list_matching's would. Real Cloud Storage keeps the client's steps (list_matching, read).
        """
        from google.api_core import exceptions

        assert self._emulator_host, "only for a storage emulator"
        try:
            return self._read_from_emulator(bucket, name)
        except exceptions.NotFound:
            return None

    def _read_from_emulator(self, bucket: str, name: str) -> bytes:
        return self._get_from_emulator(f"/download/storage/v1/b/{quote(bucket, safe='')}/o/"
                                       f"{quote(name, safe='')}?alt=media")

    def _get_from_emulator(self, path: str) -> bytes:
        """One plain GET of a JSON API URL on a kept-alive connection.

        Why not the storage client: its per-request machinery (retry wrapper, tracing span, proxy lookups
        in the environment, URL re-parsing) took most of an import's CPU against a loopback emulator
        (bench/import_throughput.py; bench/README.md).
        The URLs and the errors (google.api_core exceptions, e.g. NotFound) are the client's own.
        """
        for attempt in (1, 2):
            connection, reused = self._connection()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self._local.connection = None
                if reused and attempt == 1:  # the server may have closed an idle kept-alive connection
                    continue
                raise
            if response.will_close:
                connection.close()
                self._local.connection = None
            if response.status == 200:
                return body
            from google.api_core import exceptions

            message = body.decode("utf-8", errors="replace").strip()
            raise exceptions.from_http_status(response.status, f"GET {self._emulator_url()}{path}: {message}")
        raise AssertionError("unreachable")

    def _emulator_url(self) -> str:
        host = self._emulator_host or ""
        return host.rstrip("/") if "://" in host else f"http://{host}"

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to the emulator and whether it was used before."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        url = urlsplit(self._emulator_url())
        factory = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = factory(url.netloc, timeout=60)
        self._local.connection = connection
        return connection, False
