"""The populated store the BigQuery export tests read (one per test module)."""

from __future__ import annotations

import uuid

import pytest

from dicom_samples import SyntheticInstance, synthetic_studies
from tests.conftest import LOCATION, PROJECT, StoreRef

from .helpers import stow


@pytest.fixture(scope="module")
def populated(emulator, healthcare) -> tuple[StoreRef, list[SyntheticInstance]]:
    """One store with 2 studies x 2 series x 2 instances, shared by the tests that only read it."""
    ref = StoreRef(PROJECT, LOCATION, f"ds-{uuid.uuid4().hex[:10]}", "bq-source")
    datasets = healthcare.projects().locations().datasets()
    datasets.create(parent=f"projects/{PROJECT}/locations/{LOCATION}", datasetId=ref.dataset, body={}).execute()
    datasets.dicomStores().create(parent=ref.dataset_name, dicomStoreId=ref.store, body={}).execute()
    instances = list(synthetic_studies(studies=2, series_per_study=2, instances_per_series=2))
    stow(emulator, ref, [i.data for i in instances])
    return ref, instances
