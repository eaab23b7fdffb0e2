"""The real gcloud CLI pointed at the emulator (reference §8): `dicom-stores export gcs` to fake-gcs-server."""

from __future__ import annotations

import io
import shutil
import time

import pydicom
import pytest

from dicom_samples import synthetic_instance

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gcloud,
    pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed"),
]


def load(healthcare, store, bucket, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        bucket.blob(f"in/{name}").upload_from_string(data)
    stores = healthcare.projects().locations().datasets().dicomStores()
    operation = stores.import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/in/*"}}).execute()
    operations = healthcare.projects().locations().datasets().operations()
    while "done" not in operation:
        time.sleep(0.05)
        operation = operations.get(name=operation["name"]).execute()
    assert "error" not in operation, operation


def name_of(data: bytes) -> str:
    ds = pydicom.dcmread(io.BytesIO(data))
    return f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}"


def test_gcloud_export_gcs_with_mime_type_writes_the_stored_instances(gcloud, healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    files = {f"{n}.dcm": synthetic_instance(seed=n).data for n in range(3)}
    load(healthcare, store, bucket, files)

    result = gcloud("dicom-stores", "export", "gcs", store.store, f"--dataset={store.dataset}",
                    f"--location={store.location}", f"--gcs-uri-prefix=gs://{bucket.name}/pfx",
                    "--mime-type=application/dicom; transfer-syntax=*", project=store.project)

    assert result.returncode == 0, result.stderr
    assert f"name: {store.name}" in result.stdout  # gcloud GETs the store once the operation is done
    written = {blob.name: blob.download_as_bytes() for blob in bucket.client.list_blobs(bucket.name, prefix="pfx/")}
    assert written == {f"pfx/{name_of(data)}.dcm": data for data in files.values()}


def test_gcloud_export_gcs_png_of_a_non_image_exits_1_with_the_failure_count(gcloud, healthcare, new_store,
                                                                            new_bucket):
    from pydicom.data import get_testdata_file

    store, bucket = new_store(), new_bucket()
    with open(get_testdata_file("rtplan.dcm"), "rb") as fh:
        plan = fh.read()
    image = synthetic_instance(seed=9).data
    load(healthcare, store, bucket, {"plan.dcm": plan, "image.dcm": image})

    result = gcloud("dicom-stores", "export", "gcs", store.store, f"--dataset={store.dataset}",
                    f"--location={store.location}", f"--gcs-uri-prefix=gs://{bucket.name}/png/",
                    "--mime-type=image/png", project=store.project)

    assert result.returncode == 1
    assert "1 of 2 instances failed to export" in result.stderr
    assert bucket.get_blob(f"png/{name_of(image)}.png") is not None


def test_gcloud_export_gcs_bad_mime_type_is_an_http_400(gcloud, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()

    result = gcloud("dicom-stores", "export", "gcs", store.store, f"--dataset={store.dataset}",
                    f"--location={store.location}", f"--gcs-uri-prefix=gs://{bucket.name}/x",
                    "--mime-type=image/tiff", project=store.project)

    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "image/tiff" in result.stderr
