"""The real gcloud CLI pointed at the emulator (reference §8.3): import gcs and operations describe."""

from __future__ import annotations

import json
import shutil

import pytest

from dicom_samples import synthetic_instance

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gcloud,
    pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed"),
]


def test_gcloud_import_waits_for_the_operation_and_prints_the_store(gcloud, new_store, new_bucket, healthcare):
    store, bucket = new_store(), new_bucket()
    for index in range(3):
        bucket.blob(f"in/{index}.dcm").upload_from_string(synthetic_instance(seed=index).data)

    result = gcloud("dicom-stores", "import", "gcs", store.store, f"--dataset={store.dataset}",
                    f"--location={store.location}", f"--gcs-uri=gs://{bucket.name}/in/*.dcm",
                    project=store.project)

    assert result.returncode == 0, result.stderr
    assert f"name: {store.name}" in result.stdout  # gcloud GETs the store once the operation is done
    metrics = healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(
        name=store.name).execute()
    assert metrics["instanceCount"] == "3"


def test_gcloud_import_failure_exits_1_and_describe_shows_counters(gcloud, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    bucket.blob("mixed/good.dcm").upload_from_string(synthetic_instance().data)
    bucket.blob("mixed/bad.dcm").upload_from_string(b"\0" * 200)

    result = gcloud("dicom-stores", "import", "gcs", store.store, f"--dataset={store.dataset}",
                    f"--location={store.location}", f"--gcs-uri=gs://{bucket.name}/mixed/**.dcm", "--async",
                    "--format=json", project=store.project)
    assert result.returncode == 0, result.stderr
    operation_id = json.loads(result.stdout)["name"].rsplit("/", 1)[1]

    described = None
    for _ in range(200):
        described = gcloud("operations", "describe", operation_id, f"--dataset={store.dataset}",
                           f"--location={store.location}", "--format=json", project=store.project)
        assert described.returncode == 0, described.stderr
        if json.loads(described.stdout).get("done"):
            break
    operation = json.loads(described.stdout)
    assert operation["metadata"]["counter"] == {"success": "1", "failure": "1"}
    assert operation["error"]["code"] == 3

    waited = gcloud("dicom-stores", "import", "gcs", store.store, f"--dataset={store.dataset}",
                    f"--location={store.location}", f"--gcs-uri=gs://{bucket.name}/mixed/bad.dcm",
                    project=store.project)
    assert waited.returncode == 1
    assert "failed to import" in waited.stderr
