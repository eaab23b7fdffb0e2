"""Datasets and DICOM stores through google-api-python-client: create, get, list (paging), patch, delete."""

from __future__ import annotations

import uuid

import pytest
from googleapiclient.errors import HttpError

from tests.conftest import LOCATION, PROJECT

pytestmark = pytest.mark.integration
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def datasets(healthcare):
    return healthcare.projects().locations().datasets()


def test_dataset_create_returns_a_done_operation_and_the_dataset_can_be_read(healthcare):
    dataset_id = f"ds-{uuid.uuid4().hex[:8]}"
    operation = datasets(healthcare).create(parent=PARENT, datasetId=dataset_id,
                                            body={"timeZone": "Europe/Rome"}).execute()

    assert operation["name"].startswith(f"{PARENT}/datasets/{dataset_id}/operations/")
    assert operation["done"] is True
    assert operation["response"]["name"] == f"{PARENT}/datasets/{dataset_id}"
    assert datasets(healthcare).get(name=f"{PARENT}/datasets/{dataset_id}").execute() == {
        "name": f"{PARENT}/datasets/{dataset_id}", "timeZone": "Europe/Rome"}
    fetched = datasets(healthcare).operations().get(name=operation["name"]).execute()
    assert fetched == operation


def test_dataset_list_pages_and_delete_removes_it(healthcare):
    location = f"projects/{PROJECT}/locations/paging-{uuid.uuid4().hex[:6]}"
    ids = [f"ds-{i}" for i in range(5)]
    for dataset_id in ids:
        datasets(healthcare).create(parent=location, datasetId=dataset_id, body={}).execute()

    first = datasets(healthcare).list(parent=location, pageSize=2).execute()
    second = datasets(healthcare).list(parent=location, pageSize=2, pageToken=first["nextPageToken"]).execute()
    third = datasets(healthcare).list(parent=location, pageSize=2, pageToken=second["nextPageToken"]).execute()

    listed = [d["name"].rsplit("/", 1)[1] for page in (first, second, third) for d in page["datasets"]]
    assert listed == ids
    assert "nextPageToken" not in third
    datasets(healthcare).delete(name=f"{location}/datasets/ds-0").execute()
    with pytest.raises(HttpError) as raised:
        datasets(healthcare).get(name=f"{location}/datasets/ds-0").execute()
    assert raised.value.status_code == 404


def test_creating_an_existing_dataset_or_store_is_a_409(healthcare, new_store):
    store = new_store()
    with pytest.raises(HttpError) as raised:
        datasets(healthcare).create(parent=PARENT, datasetId=store.dataset, body={}).execute()
    assert raised.value.status_code == 409
    with pytest.raises(HttpError) as raised:
        datasets(healthcare).dicomStores().create(parent=store.dataset_name, dicomStoreId=store.store,
                                                  body={}).execute()
    assert raised.value.status_code == 409
    assert "already exists" in raised.value.reason


def test_store_keeps_labels_notification_and_stream_configs(healthcare, new_store):
    body = {
        "labels": {"env": "dev", "team": "imaging"},
        "notificationConfig": {"pubsubTopic": f"projects/{PROJECT}/topics/dicom", "sendForBulkImport": True},
        "notificationConfigs": [{"pubsubTopic": f"projects/{PROJECT}/topics/dicom-attrs"}],
        "streamConfigs": [{"bigqueryDestination": {"tableUri": f"bq://{PROJECT}.dicom.stream"}}],
    }
    store = new_store(**body)

    fetched = datasets(healthcare).dicomStores().get(name=store.name).execute()

    assert fetched == {"name": store.name, **body}


def test_store_patch_applies_only_the_update_mask(healthcare, new_store):
    store = new_store(labels={"env": "dev"},
                      notificationConfig={"pubsubTopic": f"projects/{PROJECT}/topics/t1", "sendForBulkImport": True})
    stores = datasets(healthcare).dicomStores()

    # What gcloud sends for `dicom-stores update --pubsub-topic=...` (reference §8.2).
    patched = stores.patch(name=store.name, updateMask="notificationConfig.pubsubTopic",
                           body={"notificationConfig": {"pubsubTopic": f"projects/{PROJECT}/topics/t2",
                                                        "sendForBulkImport": False},
                                 "labels": {"ignored": "x"}}).execute()

    assert patched["notificationConfig"] == {"pubsubTopic": f"projects/{PROJECT}/topics/t2",
                                             "sendForBulkImport": True}
    assert patched["labels"] == {"env": "dev"}
    relabelled = stores.patch(name=store.name, updateMask="labels", body={"labels": {"env": "prod"}}).execute()
    assert relabelled["labels"] == {"env": "prod"}
    assert stores.get(name=store.name).execute() == relabelled


def test_store_patch_without_mask_or_with_unknown_path_is_rejected(healthcare, new_store):
    store = new_store()
    stores = datasets(healthcare).dicomStores()
    with pytest.raises(HttpError) as raised:
        stores.patch(name=store.name, updateMask="", body={"labels": {"a": "b"}}).execute()
    assert raised.value.status_code == 400 and "updateMask" in raised.value.reason
    with pytest.raises(HttpError) as raised:
        stores.patch(name=store.name, updateMask="name", body={}).execute()
    assert raised.value.status_code == 400 and "'name'" in raised.value.reason


def test_store_list_filters_by_label_and_delete_removes_store(healthcare, new_store):
    store = new_store(labels={"env": "dev"})
    stores = datasets(healthcare).dicomStores()
    stores.create(parent=store.dataset_name, dicomStoreId="other", body={"labels": {"env": "prod"}}).execute()

    all_names = [s["name"] for s in stores.list(parent=store.dataset_name).execute()["dicomStores"]]
    dev = stores.list(parent=store.dataset_name, filter="labels.env=dev").execute()["dicomStores"]

    assert sorted(all_names) == sorted([store.name, f"{store.dataset_name}/dicomStores/other"])
    assert [s["name"] for s in dev] == [store.name]
    stores.delete(name=store.name).execute()
    with pytest.raises(HttpError) as raised:
        stores.get(name=store.name).execute()
    assert raised.value.status_code == 404


def test_empty_store_metrics_omit_zero_counts(healthcare, new_store):
    store = new_store()
    assert datasets(healthcare).dicomStores().getDICOMStoreMetrics(name=store.name).execute() == {
        "name": store.name}


def test_v1beta1_serves_the_same_resources(emulator, new_store):
    import requests

    store = new_store()
    response = requests.get(f"{emulator.url}/v1beta1/{store.name}?alt=json&prettyPrint=false", timeout=10)
    assert response.status_code == 200
    assert response.json()["name"] == store.name
