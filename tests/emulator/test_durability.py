"""Durability: the emulator as a separate process, killed with SIGKILL, restarted on the same data dir."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery

from dicom_samples import synthetic_studies
from healthcare_emulator.store.dicom_store import Storage
from tests.helpers import wait

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


class EmulatorProcess:
    def __init__(self, data_dir: Path, storage_url: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "healthcare_emulator", "--port", "0", "--data-dir", str(data_dir)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "STORAGE_EMULATOR_HOST": storage_url},
        )
        assert self.process.stdout is not None
        banner = ""
        for line in self.process.stdout:  # the URL is printed once the socket listens: no sleep needed
            banner += line
            match = re.search(r"Listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                self.url = match.group(1)
                break
        else:
            raise AssertionError(f"emulator did not start:\n{banner}")
        assert "emulator" in banner.lower()
        self.client = discovery.build("healthcare", "v1", credentials=AnonymousCredentials(),
                                      client_options={"api_endpoint": self.url}, cache_discovery=False)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _setup(client, bucket_name: str) -> tuple[str, str]:
    datasets = client.projects().locations().datasets()
    datasets.create(parent="projects/p/locations/l", datasetId="ds", body={}).execute()
    datasets.dicomStores().create(parent="projects/p/locations/l/datasets/ds", dicomStoreId="s", body={}).execute()
    return "projects/p/locations/l/datasets/ds", "projects/p/locations/l/datasets/ds/dicomStores/s"


def _instance_count(client, store: str) -> int:
    metrics = client.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(name=store).execute()
    return int(metrics.get("instanceCount", "0"))


def _assert_every_blob_intact(data_dir: Path) -> int:
    storage = Storage(data_dir)
    records = storage.find_instances(1)
    for record in records:
        blob = storage.blob_path(1, record.sha256).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == record.sha256
        assert len(blob) == record.size
    assert not any((data_dir / "staging").iterdir())
    return len(records)


@pytest.fixture
def populated_bucket(gcs_client):
    bucket = gcs_client.create_bucket(f"durable-{uuid.uuid4().hex[:10]}")
    for index, instance in enumerate(synthetic_studies(studies=40, series_per_study=2, instances_per_series=5,
                                                       sizes=(64, 256))):
        bucket.blob(f"set/{index:04d}.dcm").upload_from_string(instance.data)
    return bucket


def test_acknowledged_instances_survive_kill_9(tmp_path, fake_gcs, populated_bucket):
    first = EmulatorProcess(tmp_path, fake_gcs.url)
    try:
        _, store = _setup(first.client, populated_bucket.name)
        op = first.client.projects().locations().datasets().dicomStores().import_(
            name=store, body={"gcsSource": {"uri": f"gs://{populated_bucket.name}/set/*.dcm"}}).execute()
        done = wait(first.client, op)
        assert done["metadata"]["counter"] == {"success": "400"}
    finally:
        first.kill9()

    second = EmulatorProcess(tmp_path, fake_gcs.url)
    try:
        assert _instance_count(second.client, store) == 400
        assert second.client.projects().locations().datasets().operations().get(name=op["name"]).execute() == done
    finally:
        second.stop()
    assert _assert_every_blob_intact(tmp_path) == 400


def test_kill_9_mid_import_leaves_nothing_half_written(tmp_path, fake_gcs, populated_bucket):
    first = EmulatorProcess(tmp_path, fake_gcs.url)
    operations = first.client.projects().locations().datasets().operations()
    try:
        _, store = _setup(first.client, populated_bucket.name)
        op = first.client.projects().locations().datasets().dicomStores().import_(
            name=store, body={"gcsSource": {"uri": f"gs://{populated_bucket.name}/set/*.dcm"}}).execute()
        acknowledged = 0
        deadline = time.monotonic() + 60
        while acknowledged == 0:  # kill as soon as some instances are reported stored
            assert time.monotonic() < deadline
            current = operations.get(name=op["name"]).execute()
            acknowledged = int(current["metadata"].get("counter", {}).get("success", "0"))
    finally:
        first.kill9()

    stored = _assert_every_blob_intact(tmp_path)
    assert stored >= acknowledged  # nothing acknowledged was lost
    second = EmulatorProcess(tmp_path, fake_gcs.url)
    try:
        client = second.client
        aborted = client.projects().locations().datasets().operations().get(name=op["name"]).execute()
        if stored < 400:  # the process may have finished between our last poll and the kill
            assert aborted["done"] is True and aborted["error"]["code"] == 10
        # Importing again completes the set: stored instances are identical duplicates, the rest are new.
        retry = client.projects().locations().datasets().dicomStores().import_(
            name=store, body={"gcsSource": {"uri": f"gs://{populated_bucket.name}/set/*.dcm"}}).execute()
        assert wait(client, retry)["metadata"]["counter"] == {"success": "400"}
        assert _instance_count(client, store) == 400
    finally:
        second.stop()
    assert _assert_every_blob_intact(tmp_path) == 400
