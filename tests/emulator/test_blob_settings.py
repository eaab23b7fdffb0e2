"""setBlobStorageSettings at store and study level through google-api-python-client."""

from __future__ import annotations

import pytest

from dicom_samples import synthetic_studies
from tests.helpers import run_import, wait

pytestmark = pytest.mark.integration


def storage_class(healthcare, store, instance) -> str:
    resource = (f"{store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
                f"/instances/{instance.sop_uid}")
    info = healthcare.projects().locations().datasets().dicomStores().dicomWeb().studies().series().instances() \
        .getStorageInfo(resource=resource).execute()
    return info["blobStorageInfo"]["storageClass"]


@pytest.fixture
def populated(healthcare, new_store, new_bucket):
    def make(**store_body: object):
        store, bucket = new_store(**store_body), new_bucket()
        instances = list(synthetic_studies(studies=2, series_per_study=2, instances_per_series=2))
        for index, instance in enumerate(instances):
            bucket.blob(f"s/{index}.dcm").upload_from_string(instance.data)
        run_import(healthcare, store, f"gs://{bucket.name}/s/*.dcm")
        return store, bucket, instances

    return make


def test_store_level_with_a_filter_changes_only_the_named_series(healthcare, populated):
    store, bucket, instances = populated()
    target = instances[0]
    bucket.blob("filter.txt").upload_from_string(
        f"\r\n/studies/{target.study_uid}/series/{target.series_uid}\r\n\r\n".encode())

    operation = wait(healthcare, healthcare.projects().locations().datasets().dicomStores().setBlobStorageSettings(
        resource=store.name, body={"blobStorageSettings": {"blobStorageClass": "ARCHIVE"},
                                   "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket.name}/filter.txt"}}
    ).execute())

    assert operation["response"]["@type"].endswith("SetBlobStorageSettingsResponse")
    assert operation["metadata"]["counter"] == {"success": "2"}
    for instance in instances:
        expected = "ARCHIVE" if instance.series_uid == target.series_uid else "STANDARD"
        assert storage_class(healthcare, store, instance) == expected


def test_study_level_changes_the_study_and_notifies_the_previous_class(healthcare, populated, topic):
    topic_path, pull = topic
    store, _, instances = populated(notificationConfigs=[{"pubsubTopic": topic_path}])
    pull(len(instances))  # the import's own notifications
    study_uid = instances[0].study_uid

    operation = wait(healthcare, healthcare.projects().locations().datasets().dicomStores().dicomWeb().studies()
                     .setBlobStorageSettings(resource=f"{store.name}/dicomWeb/studies/{study_uid}",
                                             body={"blobStorageSettings": {"blobStorageClass": "COLDLINE"}})
                     .execute())

    in_study = [i for i in instances if i.study_uid == study_uid]
    assert operation["metadata"]["counter"] == {"success": str(len(in_study))}
    assert {storage_class(healthcare, store, i) for i in in_study} == {"COLDLINE"}
    assert {storage_class(healthcare, store, i) for i in instances if i not in in_study} == {"STANDARD"}
    messages = pull(len(in_study))
    assert {m.attributes["action"] for m in messages} == {"SetBlobSettings"}
    assert {m.attributes["previousStorageClass"] for m in messages} == {"STANDARD"}
    assert {m.attributes["storageClass"] for m in messages} == {"COLDLINE"}


def test_malformed_filter_line_fails_the_operation_naming_the_line(healthcare, populated):
    store, bucket, _ = populated()
    bucket.blob("bad.txt").upload_from_string(b"/studies/1.2.3\n\n/series/4.5.6\n")

    operation = wait(healthcare, healthcare.projects().locations().datasets().dicomStores().setBlobStorageSettings(
        resource=store.name, body={"blobStorageSettings": {"blobStorageClass": "NEARLINE"},
                                   "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket.name}/bad.txt"}}
    ).execute())

    assert operation["error"]["code"] == 3
    assert "line 3" in operation["error"]["message"]
