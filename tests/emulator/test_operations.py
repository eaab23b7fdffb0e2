"""Long-running operations: shape while running and when done, list, cancel, the operation log."""

from __future__ import annotations

import pytest
import requests
from googleapiclient.errors import HttpError

from dicom_samples import synthetic_studies
from tests.helpers import wait

pytestmark = pytest.mark.integration


def operations(healthcare):
    return healthcare.projects().locations().datasets().operations()


@pytest.fixture(scope="module")
def many_objects(gcs_client):
    """A bucket with enough objects that an import is still running when the test looks at it."""
    import uuid

    bucket = gcs_client.create_bucket(f"many-{uuid.uuid4().hex[:10]}")
    for index, instance in enumerate(synthetic_studies(studies=20, series_per_study=2, instances_per_series=10)):
        bucket.blob(f"set/{index:04d}.dcm").upload_from_string(instance.data)
    return bucket


def test_running_operation_omits_done_and_reports_pending(healthcare, new_store, many_objects):
    store = new_store()
    started = healthcare.projects().locations().datasets().dicomStores().import_(
        name=store.name, body={"gcsSource": {"uri": f"gs://{many_objects.name}/set/**"}}).execute()

    # The first answer is always "running": no done, no response, no error.
    assert "done" not in started and "response" not in started and "error" not in started
    assert started["name"].startswith(f"{store.dataset_name}/operations/")
    assert set(started["metadata"]) >= {"@type", "apiMethodName", "createTime", "logsUrl"}
    assert "endTime" not in started["metadata"]

    finished = wait(healthcare, started)
    assert finished["done"] is True
    assert finished["metadata"]["counter"] == {"success": "400"}
    assert set(finished) == {"name", "metadata", "done", "response"}
    assert all(isinstance(v, str) for v in finished["metadata"]["counter"].values())


def test_cancel_stops_an_import_and_ends_it_cancelled(healthcare, new_store, many_objects):
    store = new_store()
    started = healthcare.projects().locations().datasets().dicomStores().import_(
        name=store.name, body={"gcsSource": {"uri": f"gs://{many_objects.name}/set/*.dcm"}}).execute()

    assert operations(healthcare).cancel(name=started["name"]).execute() == {}
    finished = wait(healthcare, started)

    assert finished["metadata"]["cancelRequested"] is True
    assert finished["error"]["code"] == 1
    stored = int(finished["metadata"]["counter"].get("success", "0"))
    assert stored < 400
    metrics = healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(
        name=store.name).execute()
    assert int(metrics.get("instanceCount", "0")) == stored
    with pytest.raises(HttpError) as raised:
        operations(healthcare).cancel(name=started["name"]).execute()
    assert raised.value.status_code == 400


def test_list_shows_the_dataset_operations_and_get_unknown_is_404(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    bucket.blob("x.dcm").upload_from_string(next(synthetic_studies(1, 1, 1)).data)
    op = wait(healthcare, healthcare.projects().locations().datasets().dicomStores().import_(
        name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/x.dcm"}}).execute())

    listed = operations(healthcare).list(name=store.dataset_name).execute()["operations"]

    assert op in listed
    assert any(o["metadata"]["apiMethodName"].endswith("CreateDataset") for o in listed)
    with pytest.raises(HttpError) as raised:
        operations(healthcare).get(name=f"{store.dataset_name}/operations/12345").execute()
    assert raised.value.status_code == 404


def test_no_matching_object_ends_the_operation_with_not_found(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    op = wait(healthcare, healthcare.projects().locations().datasets().dicomStores().import_(
        name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/nothing/*.dcm"}}).execute())
    assert op["error"]["code"] == 5
    assert f"gs://{bucket.name}/nothing/*.dcm" in op["error"]["message"]


def test_operation_log_is_served_and_kept_on_disk(healthcare, new_store, new_bucket, emulator):
    store, bucket = new_store(), new_bucket()
    bucket.blob("bad.dcm").upload_from_string(b"not dicom at all")
    op = wait(healthcare, healthcare.projects().locations().datasets().dicomStores().import_(
        name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/bad.dcm"}}).execute())

    served = requests.get(op["metadata"]["logsUrl"], timeout=10).json()
    on_disk = (emulator.data_dir / "operation-logs" / f"{op['name'].rsplit('/', 1)[1]}.jsonl").read_text()

    assert served["entries"][0]["resource"] == f"gs://{bucket.name}/bad.dcm"
    assert served["entries"][0]["severity"] == "ERROR"
    assert "DICM" in served["entries"][0]["message"]
    assert f"gs://{bucket.name}/bad.dcm" in on_disk
