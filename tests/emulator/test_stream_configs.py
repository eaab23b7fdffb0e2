"""streamConfigs: every stored instance is also appended to each configured table (reference §5.6)."""

from __future__ import annotations

import pytest
import requests

from dicom_samples import synthetic_instance
from local_bigquery.query import run_query
from local_bigquery.warehouse import create_dataset
from tests.conftest import PROJECT
from tests.helpers import run_import, wait

pytestmark = pytest.mark.integration


def test_stow_import_and_storage_class_changes_stream_rows(emulator, healthcare, new_store, new_bucket):
    table = f"{PROJECT}.streams.t_{new_bucket().name.replace('-', '_')}"
    create_dataset(emulator.data_dir, PROJECT, "streams")
    store = new_store(streamConfigs=[{"bigqueryDestination": {"tableUri": f"bq://{table}",
                                                              "includeSourceStore": True}}])
    stowed, imported = synthetic_instance(seed=1), synthetic_instance(seed=2, modality="MR")
    bucket = new_bucket()
    bucket.blob("i.dcm").upload_from_string(imported.data)

    answer = requests.post(f"{emulator.url}/v1/{store.name}/dicomWeb/studies", data=stowed.data,
                           headers={"Content-Type": "application/dicom"}, timeout=30)
    assert answer.status_code == 200
    run_import(healthcare, store, f"gs://{bucket.name}/i.dcm")
    run_import(healthcare, store, f"gs://{bucket.name}/i.dcm")  # an identical duplicate streams nothing
    wait(healthcare, healthcare.projects().locations().datasets().dicomStores().setBlobStorageSettings(
        resource=store.name, body={"blobStorageSettings": {"blobStorageClass": "ARCHIVE"}}).execute())

    _, rows = run_query(emulator.data_dir, f"SELECT SOPInstanceUID, Modality, StorageClass, SourceDicomStore"
                                           f" FROM `{table}` ORDER BY LastUpdated")
    assert rows[:2] == [(stowed.sop_uid, "CT", "STANDARD", store.name), (imported.sop_uid, "MR", "STANDARD",
                                                                         store.name)]
    assert sorted(rows[2:]) == sorted([(stowed.sop_uid, "CT", "ARCHIVE", store.name),
                                       (imported.sop_uid, "MR", "ARCHIVE", store.name)])
