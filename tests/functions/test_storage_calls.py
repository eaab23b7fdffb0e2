"""dicom_pipeline.cloud_storage against fake-gcs-server: the JSON API calls the functions make, over real HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from dicom_pipeline import cloud_storage
from dicom_pipeline.errors import PermanentError, TransientError

# Names a user can give an object: the calls must quote every one of them into the URL path and query.
AWKWARD_NAMES = ["plain.dcm", "dir/sub dir/with space.dcm", "q?uery#hash%25.dcm", "ünï/cødé.json", "a+b=c&d.dcm"]


@dataclass(frozen=True)
class _Settings:
    storage_emulator_host: str
    project: str = "test-project"


@pytest.fixture
def settings(fake_gcs) -> _Settings:
    return _Settings(fake_gcs.url)


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_records_round_trip_with_generations(settings, new_bucket, name) -> None:
    bucket = new_bucket()
    assert cloud_storage.read_json(settings, bucket.name, name) is None
    first = cloud_storage.create_if_absent(settings, bucket.name, name, {"status": "started"})
    assert first is not None
    assert cloud_storage.create_if_absent(settings, bucket.name, name, {"status": "other"}) is None  # claimed already
    record, generation = cloud_storage.read_json(settings, bucket.name, name)
    assert (record, generation) == ({"status": "started"}, first)
    stale = first + 1
    assert cloud_storage.replace_json(settings, bucket.name, name, {"status": "x"}, if_generation_match=stale) is None
    second = cloud_storage.replace_json(settings, bucket.name, name, {"status": "pending"}, if_generation_match=first)
    assert second is not None and second != first
    blob = bucket.get_blob(name)  # read back with google-cloud-storage: same object, metadata as written
    assert blob.content_type == "application/json" and json.loads(blob.download_as_bytes()) == {"status": "pending"}
    cloud_storage.delete(settings, bucket.name, name, if_generation_match=second)
    assert cloud_storage.read_json(settings, bucket.name, name) is None
    cloud_storage.delete(settings, bucket.name, name)  # gone already: fine


def test_preamble_marker_reads_four_bytes_at_128(settings, new_bucket) -> None:
    bucket = new_bucket()
    bucket.blob("good.dcm").upload_from_string(b"\0" * 128 + b"DICM" + b"rest")
    bucket.blob("short.dcm").upload_from_string(b"tiny")
    bucket.blob("other.dcm").upload_from_string(b"x" * 300)
    good = bucket.get_blob("good.dcm")
    assert cloud_storage.read_preamble_marker(settings, bucket.name, "good.dcm", str(good.generation)) == b"DICM"
    assert cloud_storage.read_preamble_marker(settings, bucket.name, "good.dcm", None) == b"DICM"
    assert cloud_storage.read_preamble_marker(settings, bucket.name, "short.dcm", None) == b""
    assert cloud_storage.read_preamble_marker(settings, bucket.name, "other.dcm", None) == b"xxxx"


def test_preamble_of_an_overwritten_generation_is_none(settings, new_bucket) -> None:
    bucket = new_bucket()
    blob = bucket.blob("over.dcm")
    blob.upload_from_string(b"\0" * 128 + b"DICM")
    old = bucket.get_blob("over.dcm").generation
    blob.upload_from_string(b"\0" * 128 + b"DICM" + b"v2")
    assert cloud_storage.read_preamble_marker(settings, bucket.name, "over.dcm", str(old)) is None


def test_copy_pins_the_source_generation(settings, new_bucket) -> None:
    source, staging = new_bucket(), new_bucket()
    name = "in dir/ä?.dcm"
    source.blob(name).upload_from_string(b"version one")
    first = source.get_blob(name).generation
    cloud_storage.copy(settings, source.name, name, str(first), staging.name, "staging/import/batch-x/k.dcm")
    assert staging.blob("staging/import/batch-x/k.dcm").download_as_bytes() == b"version one"
    source.blob(name).upload_from_string(b"version two")
    with pytest.raises(TransientError, match=r"copying gs://.*HTTP 404"):  # that generation is gone
        cloud_storage.copy(settings, source.name, name, str(first), staging.name, "staging/import/batch-y/k.dcm")


def test_write_text_overwrites(settings, new_bucket) -> None:
    bucket = new_bucket()
    cloud_storage.write_text(settings, bucket.name, "filters/f.txt", "/studies/1\n")
    cloud_storage.write_text(settings, bucket.name, "filters/f.txt", "/studies/2\n")
    blob = bucket.get_blob("filters/f.txt")
    assert blob.download_as_bytes() == b"/studies/2\n" and blob.content_type == "text/plain"


def test_errors_name_the_object_and_the_status(settings) -> None:
    # A missing bucket is operator-fixable (being provisioned): transient, with the status and the object.
    with pytest.raises(TransientError, match=r"writing gs://no-such-bucket-x/r.json: HTTP 404"):
        cloud_storage.replace_json(settings, "no-such-bucket-x", "r.json", {})
    with pytest.raises(TransientError, match=r"reading gs://no-such-bucket-x/a b.dcm: HTTP 404"):
        cloud_storage.read_preamble_marker(settings, "no-such-bucket-x", "a b.dcm", None)


def test_a_client_error_is_permanent() -> None:
    error = cloud_storage.StorageHttpError(400, "Invalid argument")
    from dicom_pipeline.errors import classify

    assert isinstance(classify(error, "writing gs://b/o"), PermanentError)


def test_an_unreachable_endpoint_is_transient() -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError, match=r"reading gs://b/r.json"):
        cloud_storage.read_json(_Settings(f"http://127.0.0.1:{port}"), "b", "r.json")


def test_credentials_refresh_through_the_transport_from_another_host(fake_gcs, new_bucket) -> None:
    """In production the token comes from the metadata server, another host than the API's: the refresh
    goes through the same AuthorizedHttp, so the transport must reach any host. A token endpoint on
    loopback stands in for the metadata server (which cannot run here)."""
    import datetime
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import google.auth.credentials

    served: list[str] = []

    class TokenEndpoint(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            body = json.dumps({"access_token": f"token-{len(served)}", "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class EndpointCredentials(google.auth.credentials.Credentials):
        def __init__(self, url: str):
            super().__init__()
            self.url = url

        def refresh(self, request) -> None:
            response = request(url=self.url, method="GET")
            assert response.status == 200, response.data
            self.token = json.loads(response.data)["access_token"]
            self.expiry = datetime.datetime.utcnow() + datetime.timedelta(hours=1)  # naive UTC, as google-auth

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        credentials = EndpointCredentials(f"http://127.0.0.1:{server.server_port}/token")
        api = cloud_storage.authorized(credentials, fake_gcs.url)
        bucket = new_bucket()
        for _ in range(3):
            response = api.http.request("GET", f"{api.base}/storage/v1/b/{bucket.name}/o")
            assert response.status == 200
        assert served == ["/token"]  # one refresh, then the token is reused
        assert credentials.token == "token-1"
    finally:
        server.shutdown()
        server.server_close()
