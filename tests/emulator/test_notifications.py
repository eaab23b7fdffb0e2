"""Pub/Sub notifications from the emulator, read back from the real Pub/Sub emulator with google-cloud-pubsub."""

from __future__ import annotations

import pytest
import requests

from dicom_samples import synthetic_instance
from tests.conftest import PROJECT
from tests.helpers import run_import

pytestmark = pytest.mark.integration


def stow(emulator, store, data: bytes) -> None:
    response = requests.post(f"{emulator.url}/v1/{store.name}/dicomWeb/studies", data=data,
                             headers={"Content-Type": "application/dicom"}, timeout=30)
    assert response.status_code == 200, response.text


def resource_name(store, instance) -> str:
    return (f"{store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
            f"/instances/{instance.sop_uid}")


def test_legacy_config_sends_the_instance_name_without_attributes_on_stow(emulator, new_store, topic):
    topic_path, pull = topic
    store = new_store(notificationConfig={"pubsubTopic": topic_path})
    instance = synthetic_instance()

    stow(emulator, store, instance.data)

    [message] = pull(1)
    assert message.data.decode() == resource_name(store, instance)
    assert dict(message.attributes) == {}


def test_legacy_config_sends_for_imports_only_with_send_for_bulk_import(
    emulator, healthcare, new_store, new_bucket, topic
):
    topic_path, pull = topic
    quiet = new_store(notificationConfig={"pubsubTopic": topic_path})
    loud = new_store(notificationConfig={"pubsubTopic": topic_path, "sendForBulkImport": True})
    bucket = new_bucket()
    instances = [synthetic_instance(seed=i) for i in range(3)]
    for index, instance in enumerate(instances):
        bucket.blob(f"n/{index}.dcm").upload_from_string(instance.data)

    run_import(healthcare, quiet, f"gs://{bucket.name}/n/*.dcm")
    assert pull(1, wait=1.0) == []
    run_import(healthcare, loud, f"gs://{bucket.name}/n/*.dcm")

    received = pull(3)
    assert sorted(m.data.decode() for m in received) == sorted(resource_name(loud, i) for i in instances)


def test_notification_configs_carry_attributes_on_stow_and_import(
    emulator, healthcare, new_store, new_bucket, topic
):
    topic_path, pull = topic
    store = new_store(notificationConfigs=[{"pubsubTopic": topic_path}])
    stowed, imported = synthetic_instance(seed=1, modality="MR"), synthetic_instance(seed=2)
    bucket = new_bucket()
    bucket.blob("i.dcm").upload_from_string(imported.data)

    stow(emulator, store, stowed.data)
    run_import(healthcare, store, f"gs://{bucket.name}/i.dcm", blobStorageSettings={"blobStorageClass": "ARCHIVE"})

    by_action = {m.attributes["action"]: m for m in pull(2)}
    assert set(by_action) == {"StoreInstances", "ImportDicomData"}
    stow_message = by_action["StoreInstances"]
    assert stow_message.data.decode() == resource_name(store, stowed)
    attributes = dict(stow_message.attributes)
    assert attributes["storeName"] == store.name
    assert attributes["studyInstanceUID"] == stowed.study_uid
    assert attributes["seriesInstanceUID"] == stowed.series_uid
    assert attributes["sopInstanceUID"] == stowed.sop_uid
    assert attributes["modality"] == "MR"
    assert attributes["storageClass"] == "STANDARD"
    assert attributes["lastUpdatedTime"].endswith(" GMT")
    assert attributes["versionId"].isdigit()
    assert "previousStorageClass" not in attributes
    assert by_action["ImportDicomData"].attributes["storageClass"] == "ARCHIVE"


def test_missing_topic_is_logged_and_the_instance_is_kept(emulator, healthcare, new_store, new_bucket):
    store = new_store(notificationConfig={"pubsubTopic": f"projects/{PROJECT}/topics/does-not-exist",
                                          "sendForBulkImport": True})
    bucket = new_bucket()
    bucket.blob("x.dcm").upload_from_string(synthetic_instance().data)

    operation = run_import(healthcare, store, f"gs://{bucket.name}/x.dcm")

    assert operation["metadata"]["counter"] == {"success": "1"}
    assert "error" not in operation
    entries = requests.get(operation["metadata"]["logsUrl"], timeout=10).json()["entries"]
    assert any("does-not-exist" in e["message"] and e["severity"] == "WARNING" for e in entries)
    metrics = healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(
        name=store.name).execute()
    assert metrics["instanceCount"] == "1"


def test_concurrent_publishers_each_get_their_own_outcome(pubsub, topic):
    """Group publishing: callers publishing at once share requests; every message arrives once, and a caller
    whose topic is missing gets the error while the others succeed."""
    from concurrent.futures import ThreadPoolExecutor

    from healthcare_emulator.jobs.notifications import ChangedInstance, Notifier

    topic_path, pull = topic
    notifier = Notifier(pubsub.host)
    good = {"name": "projects/p/locations/l/datasets/d/dicomStores/s",
            "notificationConfigs": [{"pubsubTopic": topic_path}]}
    bad = {"name": "projects/p/locations/l/datasets/d/dicomStores/s",
           "notificationConfigs": [{"pubsubTopic": f"projects/{PROJECT}/topics/does-not-exist-group"}]}

    def publish(n: int) -> list[str]:
        problems: list[str] = []
        store = bad if n % 10 == 9 else good
        instances = [ChangedInstance(f"1.2.{n}", "1.3", f"1.4.{n}.{k}", "CT", "STANDARD") for k in range(1 + n % 3)]
        notifier.instances_changed(store, instances, "ImportDicomData", lambda message, _: problems.append(message))
        return problems

    try:
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(publish, range(60)))
    finally:
        notifier.close()
    assert [bool(p) for p in outcomes] == [n % 10 == 9 for n in range(60)]
    assert all("does-not-exist-group" in p[0] for p in outcomes if p)
    expected = sorted(f"{good['name']}/dicomWeb/studies/1.2.{n}/series/1.3/instances/1.4.{n}.{k}"
                      for n in range(60) if n % 10 != 9 for k in range(1 + n % 3))
    received = pull(len(expected))
    assert sorted(m.data.decode() for m in received) == expected
    assert all(m.attributes["action"] == "ImportDicomData" for m in received)
