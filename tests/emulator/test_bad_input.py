"""Bad requests get the right 4xx in Google's error envelope, with a message naming the problem."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.integration


def call(emulator, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, f"{emulator.url}/v1/{path}", timeout=10, **kwargs)


def assert_error(response: requests.Response, status: int, rpc_status: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    assert error["status"] == rpc_status
    for word in words:
        assert word in error["message"], error["message"]


def test_malformed_json_body(emulator, new_store):
    store = new_store()
    response = call(emulator, "POST", f"{store.name}:import", data=b'{"gcsSource": ',
                    headers={"Content-Type": "application/json"})
    assert_error(response, 400, "INVALID_ARGUMENT", "Invalid JSON payload")


def test_json_that_is_not_an_object(emulator, new_store):
    response = call(emulator, "POST", f"{new_store().name}:import", json=["gs://bucket/x"])
    assert_error(response, 400, "INVALID_ARGUMENT", "Expected an object")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"gcsSource": {"uri": "gs://bucket/x.dcm"}, "extra": 1}, ['"extra"']),
        ({"gcsSource": {"url": "gs://bucket/x.dcm"}}, ['"url"', "gcs_source"]),
        ({"gcsSource": "gs://bucket/x.dcm"}, ["gcs_source"]),
        ({}, ["gcsSource.uri is required"]),
        ({"gcsSource": {"uri": "s3://b/x.dcm"}}, ["s3://b/x.dcm", "gs://BUCKET/OBJECT"]),
        ({"gcsSource": {"uri": "gs://bucket/"}}, ["names no object"]),
        ({"gcsSource": {"uri": "gs://bucket/x.dcm"}, "blobStorageSettings": {"blobStorageClass": "COLD"}},
         ["'COLD'", "ARCHIVE"]),
    ],
)
def test_import_request_validation(emulator, new_store, body, words):
    assert_error(call(emulator, "POST", f"{new_store().name}:import", json=body), 400, "INVALID_ARGUMENT", *words)


@pytest.mark.parametrize(
    "uri",
    [
        "gs://bucket/a/**/b.dcm",  # ** must be at the end
        "gs://bucket/**/*.dcm",  # ** must be the only wildcard
        "gs://bucket/a/***",
        "gs://bucket/a?/**",
        "gs://bucket/**.dcm/x",
    ],
)
def test_invalid_wildcard_patterns_are_rejected(emulator, new_store, uri):
    response = call(emulator, "POST", f"{new_store().name}:import", json={"gcsSource": {"uri": uri}})
    assert_error(response, 400, "INVALID_ARGUMENT", "wildcard", uri)


def test_missing_dataset_and_missing_store_are_404_naming_what_is_missing(emulator, new_store):
    store = new_store()
    missing_dataset = store.name.replace(store.dataset, "no-such-dataset")
    assert_error(call(emulator, "GET", missing_dataset), 404, "NOT_FOUND", "dataset", "no-such-dataset")
    missing_store = f"{store.dataset_name}/dicomStores/no-such-store"
    assert_error(call(emulator, "POST", f"{missing_store}:import", json={"gcsSource": {"uri": "gs://bucket/x"}}),
                 404, "NOT_FOUND", "DICOM store", "no-such-store")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("projects/p/locations/l/datasets?datasetId=bad%20id", ["dataset ID", "bad id"]),
        ("projects/p/locations/l/datasets?datasetId=..", ["dataset ID"]),
        ("projects/p/locations/l/datasets", ["datasetId is required"]),
        ("projects/UPPER/locations/l/datasets?datasetId=ok", ["project ID", "UPPER"]),
    ],
)
def test_invalid_resource_names_are_400(emulator, path, words):
    assert_error(call(emulator, "POST", path, json={}), 400, "INVALID_ARGUMENT", *words)


def test_invalid_store_id_and_labels(emulator, new_store):
    store = new_store()
    response = call(emulator, "POST", f"{store.dataset_name}/dicomStores?dicomStoreId=a/b", json={})
    assert response.status_code in (400, 404)
    response = call(emulator, "POST", f"{store.dataset_name}/dicomStores?dicomStoreId=x%24y", json={})
    assert_error(response, 400, "INVALID_ARGUMENT", "DICOM store ID", "x$y")
    response = call(emulator, "POST", f"{store.dataset_name}/dicomStores?dicomStoreId=ok",
                    json={"labels": {"Env": "dev"}})
    assert_error(response, 400, "INVALID_ARGUMENT", "label key", "Env")
    response = call(emulator, "POST", f"{store.dataset_name}/dicomStores?dicomStoreId=ok",
                    json={"notificationConfig": {"pubsubTopic": "my-topic"}})
    assert_error(response, 400, "INVALID_ARGUMENT", "pubsubTopic", "my-topic")


def test_path_traversal_never_escapes(emulator, new_store):
    store = new_store()
    for path in (f"{store.dataset_name}/dicomStores/..%2F..%2Fetc", "projects/p/locations/l/datasets/..%2F..",
                 f"{store.name}/../../../etc/passwd"):
        response = call(emulator, "GET", path)
        assert 400 <= response.status_code < 500, path
        assert "error" in response.json()


def test_unknown_paths_and_methods(emulator, new_store):
    store = new_store()
    assert_error(call(emulator, "GET", f"{store.name}:frobnicate"), 404, "NOT_FOUND", "unknown path")
    assert_error(requests.get(f"{emulator.url}/v2/{store.name}", timeout=10), 404, "NOT_FOUND", "/v1/")
    assert_error(call(emulator, "PUT", store.name, json={}), 405, "UNIMPLEMENTED", "PUT")


def test_the_emulator_keeps_serving_after_bad_requests(emulator, new_store):
    store = new_store()
    for _ in range(20):
        call(emulator, "POST", f"{store.name}:import", data=b"\xff\xfe garbage")
    assert call(emulator, "GET", store.name).json()["name"] == store.name
    assert requests.get(f"{emulator.url}/_emulator/health", timeout=10).json()["status"] == "ok"


def test_unreadable_content_length_is_a_400_and_the_server_survives(emulator, new_store):
    import socket

    store = new_store()
    with socket.create_connection((emulator.host, emulator.port), timeout=10) as sock:
        sock.sendall(f"POST /v1/{store.name}:import HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):  # the server closes the connection after this answer
            chunks.append(chunk)
        answer = b"".join(chunks).decode()
    assert answer.startswith("HTTP/1.1 400")
    assert "unreadable request body" in answer
    assert call(emulator, "GET", store.name).status_code == 200
