"""The import function fed as Terraform deploys it: the landing bucket's Cloud Storage notification, pushed by
Pub/Sub (a raw push body, which functions-framework turns into a messagePublished CloudEvent)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from dicom_samples import synthetic_instance

pytestmark = pytest.mark.integration


def _push(app_client, obj: dict, event_type: str = "OBJECT_FINALIZE", payload: str = "JSON_API_V1"):
    attributes = {"eventType": event_type, "payloadFormat": payload, "bucketId": obj["bucket"],
                  "objectId": obj["name"], "objectGeneration": str(obj.get("generation", "1"))}
    body = {"message": {"data": base64.b64encode(json.dumps(obj).encode()).decode(), "attributes": attributes,
                        "messageId": str(uuid.uuid4().int)[:16], "publishTime": "2026-01-01T00:00:00Z"},
            "subscription": "projects/test-project/subscriptions/dicom-import"}
    return app_client("import_dicom_object").post("/", json=body)


def _uploaded(pipeline, name: str) -> dict:
    blob = pipeline.source.blob(name)
    blob.upload_from_string(synthetic_instance().data, content_type="application/dicom")
    blob.reload()
    return dict(blob._properties)  # the object resource, as a JSON_API_V1 notification carries it


def test_a_pushed_finalize_notification_imports_the_object(pipeline, instance_count, app_client) -> None:
    response = _push(app_client, _uploaded(pipeline, "in/pushed.dcm"))
    assert response.status_code == 200
    assert instance_count(pipeline.store) == 1


@pytest.mark.parametrize("event_type", ["OBJECT_DELETE", "OBJECT_METADATA_UPDATE"])
def test_other_notifications_are_ignored(pipeline, instance_count, app_client, event_type) -> None:
    response = _push(app_client, _uploaded(pipeline, "in/other.dcm"), event_type=event_type)
    assert response.status_code == 200
    assert instance_count(pipeline.store) == 0
    assert pipeline.dead_letters("import") == []


def test_a_notification_without_an_object_is_dead_lettered(pipeline, app_client) -> None:
    response = _push(app_client, {"bucket": pipeline.source.name, "name": ""})
    assert response.status_code == 200  # permanent: recorded, not retried
    (record,) = pipeline.dead_letters("import")
    assert "bucket or name" in json.dumps(record)
