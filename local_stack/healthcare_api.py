"""A google-api-python-client Healthcare service pointed at an emulator, and the steps every script repeats."""

from __future__ import annotations

import time
from typing import Any

from dicom_pipeline.names import DicomStoreName


def healthcare_service(url: str) -> Any:
    """healthcare v1 from the client's bundled discovery document, anonymous, talking to `url`."""
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery

    return discovery.build("healthcare", "v1", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": url}, cache_discovery=False)


def create_dicom_store(healthcare: Any, project: str, location: str, dataset: str, store: str,
                       **store_body: Any) -> str:
    """Create a dataset and a DICOM store in it; return the store's resource name."""
    name = DicomStoreName(project, location, dataset, store)
    datasets = healthcare.projects().locations().datasets()
    datasets.create(parent=f"projects/{project}/locations/{location}", datasetId=dataset, body={}).execute()
    datasets.dicomStores().create(parent=name.dataset_name, dicomStoreId=store, body=store_body).execute()
    return str(name)


def wait_for_operation(healthcare: Any, operation: dict[str, Any], poll_seconds: float = 0.1) -> dict[str, Any]:
    """Poll until the operation is done (the API omits `done` while it runs)."""
    operations = healthcare.projects().locations().datasets().operations()
    while "done" not in operation:
        time.sleep(poll_seconds)
        operation = operations.get(name=operation["name"]).execute()
    return operation
