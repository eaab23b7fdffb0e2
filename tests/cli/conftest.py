"""Fixtures of the CLI tests: the CLI pointed at the emulator and fake-gcs-server, DICOM in a bucket."""

from __future__ import annotations

import pytest

from dicom_samples import synthetic_studies


@pytest.fixture
def cli_env(monkeypatch, emulator, fake_gcs):
    monkeypatch.setenv("HEALTHCARE_API_ENDPOINT", emulator.url)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)


def upload_studies(bucket, studies: int = 1, series: int = 1, instances: int = 3):
    """Synthetic instances as gs://BUCKET/in/N.dcm (studies alternate CT, MR); returns them."""
    uploaded = list(synthetic_studies(studies=studies, series_per_study=series, instances_per_series=instances))
    for index, instance in enumerate(uploaded):
        bucket.blob(f"in/{index}.dcm").upload_from_string(instance.data)
    return uploaded


def storage_class(healthcare, store_name: str, instance) -> str:
    """The instance's storage class as the API's getStorageInfo reports it."""
    resource = (f"{store_name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
                f"/instances/{instance.sop_uid}")
    info = healthcare.projects().locations().datasets().dicomStores().dicomWeb().studies().series().instances() \
        .getStorageInfo(resource=resource).execute()
    return str(info["blobStorageInfo"]["storageClass"])
