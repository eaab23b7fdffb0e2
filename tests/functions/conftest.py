"""Fixtures for the Cloud Functions: a store, a staging bucket and the settings, set as real environment variables."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from local_bigquery.query import run_query
from local_bigquery.warehouse import create_dataset

STORAGE_TYPE = "google.cloud.storage.object.v1.finalized"
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass
class Pipeline:
    store: Any
    source: Any  # upload bucket
    staging: Any  # staging bucket
    table: str  # bq://P.D.T
    data_dir: Any

    def upload(self, name: str, data: bytes) -> CloudEvent:
        blob = self.source.blob(name)
        blob.upload_from_string(data, content_type="application/dicom")
        blob.reload()
        return storage_event(self.source.name, name, blob.size, blob.generation)

    def rows(self) -> list[tuple]:
        project, dataset, table = self.table.removeprefix("bq://").split(".")
        try:
            _, rows = run_query(self.data_dir, f"SELECT SOPInstanceUID FROM `{project}.{dataset}.{table}`")
        except Exception as exc:  # no table yet
            if "does not exist" in str(exc) or "not found" in str(exc).lower():
                return []
            raise
        return rows

    def dead_letters(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(b.download_as_bytes()) for b in self.staging.list_blobs(prefix=f"dead-letter/{kind}/")]


def storage_event(bucket: str, name: str, size: int | str, generation: int | str | None = 1,
                  event_id: str | None = None) -> CloudEvent:
    attributes = {"type": STORAGE_TYPE, "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
                  "subject": f"objects/{name}", "id": event_id or uuid.uuid4().hex,
                  "datacontenttype": "application/json"}
    # Proto-JSON renders int64 as strings; send them that way, as Eventarc does.
    data = {"bucket": bucket, "name": name, "size": str(size), "generation": str(generation),
            "metageneration": "1", "contentType": "application/dicom", "kind": "storage#object"}
    return CloudEvent(attributes, data)


def pubsub_event(data: bytes | str, attributes: dict[str, str] | None = None,
                 message_id: str | None = None, raw_data: Any = None) -> CloudEvent:
    message_id = message_id or str(uuid.uuid4().int)[:16]
    if isinstance(data, str):
        data = data.encode()
    message: dict[str, Any] = {"data": base64.b64encode(data).decode() if raw_data is None else raw_data,
                               "messageId": message_id, "publishTime": "2026-01-01T00:00:00.000Z"}
    if attributes:
        message["attributes"] = attributes
    return CloudEvent({"type": PUBSUB_TYPE, "source": "//pubsub.googleapis.com/projects/test-project/topics/t",
                       "id": message_id, "datacontenttype": "application/json"},
                      {"message": message, "subscription": "projects/test-project/subscriptions/s"})


@pytest.fixture
def pipeline(emulator, fake_gcs, new_store, new_bucket, monkeypatch) -> Pipeline:
    store = new_store()
    source, staging = new_bucket(), new_bucket()
    dataset = f"functions_{uuid.uuid4().hex[:8]}"
    create_dataset(emulator.data_dir, "test-project", dataset)  # as Terraform does: exports never create it
    table = f"bq://test-project.{dataset}.instances"
    monkeypatch.setenv("DICOM_STORE", store.name)
    monkeypatch.setenv("STAGING_BUCKET", staging.name)
    monkeypatch.setenv("BIGQUERY_TABLE", table)
    monkeypatch.setenv("HEALTHCARE_API_ENDPOINT", emulator.url)
    monkeypatch.setenv("LOGGING_API_ENDPOINT", emulator.url)  # the emulator serves Cloud Logging too
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    monkeypatch.setenv("OPERATION_WAIT_SECONDS", "60")
    return Pipeline(store, source, staging, table, emulator.data_dir)


@pytest.fixture
def instance_count(healthcare) -> Callable[[Any], int]:
    def count(store: Any) -> int:
        metrics = healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(
            name=store.name).execute()
        return int(metrics.get("instanceCount", "0"))

    return count


@pytest.fixture(scope="session")
def app_client() -> Callable[[str], Any]:
    from pathlib import Path

    import functions_framework

    main = str(Path(__file__).resolve().parents[2] / "main.py")
    clients: dict[str, Any] = {}

    def get(target: str) -> Any:
        if target not in clients:
            clients[target] = functions_framework.create_app(target, main, "cloudevent").test_client()
        return clients[target]

    return get
