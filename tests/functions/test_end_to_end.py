"""Upload → import function → store notifications → export function, every event delivered three times."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cloudevents.conversion import to_binary, to_structured

from dicom_samples import synthetic_instance

from .conftest import pubsub_event

pytestmark = pytest.mark.integration


def _deliver(client, event, to_http) -> int:
    """POST until 200, as the platform redelivers after a 500 (a raised TransientError)."""
    headers, body = to_http(event)
    for _ in range(200):
        response = client.post("/", headers=headers, data=body)
        if response.status_code == 200:
            return 200
        time.sleep(0.05)
    raise AssertionError("the event never settled")


def test_three_deliveries_of_every_event_give_one_instance_and_one_row(pipeline, new_store, topic, app_client,
                                                                        instance_count, monkeypatch) -> None:
    topic_path, pull = topic
    store = new_store(notificationConfig={"pubsubTopic": topic_path, "sendForBulkImport": True})
    monkeypatch.setenv("DICOM_STORE", store.name)
    instances = [synthetic_instance() for _ in range(4)]
    import_events = [pipeline.upload(f"e2e/{i}.dcm", inst.data) for i, inst in enumerate(instances)]
    import_client, export_client = app_client("import_dicom_object"), app_client("export_dicom_metadata")

    with ThreadPoolExecutor(12) as pool:  # concurrent redelivery through functions-framework, binary mode
        list(pool.map(lambda e: _deliver(import_client, e, to_binary), import_events * 3))
    for event in import_events:  # and sequential redelivery afterwards
        _deliver(import_client, event, to_binary)
    messages = pull(len(instances), wait=15)
    time.sleep(0.5)
    messages += pull(100, wait=0.5)  # any extra notifications a duplicate import might have caused
    export_events = [pubsub_event(m.data, dict(m.attributes), message_id=m.message_id) for m in messages]
    with ThreadPoolExecutor(12) as pool:  # concurrent redelivery, structured mode
        list(pool.map(lambda e: _deliver(export_client, e, to_structured), export_events * 3))
    for event in export_events:
        _deliver(export_client, event, to_structured)

    assert instance_count(store) == len(instances)
    assert sorted(pipeline.rows()) == sorted((i.sop_uid,) for i in instances)
