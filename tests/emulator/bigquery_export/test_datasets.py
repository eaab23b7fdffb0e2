"""BigQuery datasets are never created by an export (or by streaming): the real API fails when the dataset is
missing, and clients create it first (Terraform in the cloud; `python -m local_bigquery create-dataset` or
local_bigquery.warehouse.create_dataset locally, `local-stack up` for its own)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import requests
from googleapiclient.errors import HttpError

from dicom_samples import synthetic_studies
from local_bigquery.warehouse import dataset_exists
from tests.conftest import PROJECT
from tests.emulator.bigquery_export.helpers import export, stow

pytestmark = pytest.mark.integration


def _create_dataset_cli(emulator, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "local_bigquery", "create-dataset", name,
                           "--data-dir", str(emulator.data_dir), *extra], capture_output=True, text=True, timeout=60)


def test_export_to_a_missing_dataset_fails_until_the_dataset_is_created(emulator, healthcare, new_store):
    store = new_store()
    stow(emulator, store, [i.data for i in synthetic_studies(1, 1, 2)])
    dataset = f"missing_{uuid.uuid4().hex[:10]}"
    with pytest.raises(HttpError) as refused:
        export(healthcare, store, {"tableUri": f"bq://{PROJECT}.{dataset}.t", "writeDisposition": "WRITE_APPEND"})
    assert refused.value.status_code == 404
    message = str(refused.value)
    assert f"Not found: Dataset {PROJECT}:{dataset}" in message and "failed to verify dataset" in message, message
    assert not dataset_exists(emulator.data_dir, PROJECT, dataset)  # nothing was created on the way

    created = _create_dataset_cli(emulator, f"{PROJECT}:{dataset}")
    assert created.returncode == 0, created.stderr
    assert f"Dataset '{PROJECT}:{dataset}' successfully created." in created.stdout
    operation = export(healthcare, store, {"tableUri": f"bq://{PROJECT}.{dataset}.t"})
    assert "error" not in operation, operation
    assert operation["metadata"]["counter"] == {"success": "2"}
    # The names the Italian seed shows for an export to BigQuery.
    assert operation["metadata"]["apiMethodName"] == "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData_bq"
    assert operation["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}

    again = _create_dataset_cli(emulator, f"{PROJECT}.{dataset}")
    assert again.returncode == 1 and "Already Exists" in again.stderr, again
    assert _create_dataset_cli(emulator, f"{PROJECT}.{dataset}", "--exists-ok").returncode == 0


def test_a_project_without_any_dataset_is_refused_too(emulator, healthcare, new_store):
    store = new_store()
    project = f"p{uuid.uuid4().hex[:10]}"  # no warehouse file at all for this project
    with pytest.raises(HttpError) as refused:
        export(healthcare, store, {"tableUri": f"bq://{project}.ds.t"})
    assert refused.value.status_code == 404
    assert not (emulator.data_dir / "warehouse" / f"{project}.duckdb").exists()


def test_gcloud_export_bq_to_a_missing_dataset_fails_with_not_found(emulator, gcloud, new_store):
    store = new_store()
    done = gcloud("dicom-stores", "export", "bq", store.store, f"--dataset={store.dataset}",
                  f"--location={store.location}", f"--bq-table=bq://{PROJECT}.nowhere_{uuid.uuid4().hex[:8]}.t",
                  project=store.project)
    assert done.returncode == 1, done
    assert "NOT_FOUND" in done.stderr and "Not found: Dataset" in done.stderr, done.stderr


def test_streaming_to_a_missing_dataset_stores_the_instance_and_writes_no_table(emulator, healthcare, new_store):
    dataset = f"nostream_{uuid.uuid4().hex[:8]}"
    store = new_store(streamConfigs=[{"bigqueryDestination": {"tableUri": f"bq://{PROJECT}.{dataset}.t"}}])
    instance = next(synthetic_studies(1, 1, 1))
    answer = requests.post(f"{emulator.url}/v1/{store.name}/dicomWeb/studies", data=instance.data, timeout=30,
                           headers={"Content-Type": "application/dicom"})
    assert answer.status_code == 200, answer.text
    assert not dataset_exists(emulator.data_dir, PROJECT, dataset)
