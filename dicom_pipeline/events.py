"""CloudEvent payloads as typed values. Parsing failures are PermanentError naming the problem."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import PermanentError

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
# A Cloud Storage Pub/Sub notification (how Terraform delivers uploads: landing bucket → topic → push
# subscription → import function) announces a new object with these attributes.
NOTIFICATION_FINALIZE = {"eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"}


@dataclass(frozen=True)
class StorageObject:
    bucket: str
    name: str
    size: int
    generation: str
    content_type: str | None = None

    @property
    def path(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class PubSubMessage:
    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: str | None = None


def storage_object(data: Any) -> StorageObject:
    if not isinstance(data, dict):
        raise PermanentError("storage event data is not a JSON object")
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str) or not bucket or not isinstance(name, str) or not name:
        raise PermanentError("storage event data lacks bucket or name")
    # int64 fields arrive as strings in proto-JSON and as numbers in some test data; accept both.
    try:
        size = int(data.get("size", 0) or 0)
    except (TypeError, ValueError):
        raise PermanentError(f"storage event size is not a number: {data.get('size')!r}") from None
    return StorageObject(bucket, name, size, str(data.get("generation", "") or ""), data.get("contentType"))


def _notification_attributes(data: Any) -> dict[str, Any]:
    message = data.get("message") if isinstance(data, dict) else None
    attributes = message.get("attributes") if isinstance(message, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def is_finalize_notification(data: Any) -> bool:
    """A messagePublished event's data carrying a Cloud Storage finalize notification."""
    attributes = _notification_attributes(data)
    return all(attributes.get(k) == v for k, v in NOTIFICATION_FINALIZE.items())


def finalized_object(event_type: str, data: Any, event_id: str) -> StorageObject:
    """The object of a finalize CloudEvent, or of a finalize notification pushed by Pub/Sub (its data is the
    JSON_API_V1 object resource, with the fields of a finalize CloudEvent's data)."""
    if event_type == PUBSUB_PUBLISHED:
        return storage_object(json_object(pubsub_message(data, event_id).data, "storage notification data"))
    return storage_object(data)


def object_subject(data: Any) -> dict[str, str | None]:
    """{"object": gs://bucket/name, "generation"} of either event shape, for logs and dead-letter records (no
    object content); None values when the event does not name an object."""
    attributes = _notification_attributes(data)
    if attributes.get("bucketId") and attributes.get("objectId"):
        return {"object": f"gs://{attributes['bucketId']}/{attributes['objectId']}",
                "generation": str(attributes.get("objectGeneration") or "") or None}
    if isinstance(data, dict) and data.get("name"):
        return {"object": f"gs://{data.get('bucket')}/{data['name']}",
                "generation": str(data.get("generation") or "") or None}
    return {"object": None, "generation": None}


def pubsub_message(data: Any, event_id: str) -> PubSubMessage:
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise PermanentError("Pub/Sub event data has no message object")
    message = data["message"]
    raw = message.get("data", "")
    if not isinstance(raw, str):
        raise PermanentError("Pub/Sub message data is not a base64 string")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise PermanentError("Pub/Sub message data is not valid base64") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise PermanentError("Pub/Sub message attributes is not an object")
    message_id = str(message.get("messageId") or message.get("message_id") or event_id)
    return PubSubMessage(message_id, decoded, {str(k): str(v) for k, v in attributes.items()},
                         message.get("publishTime"))


def json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"{what} is not valid JSON: {exc.__class__.__name__}") from None
    if not isinstance(value, dict):
        raise PermanentError(f"{what} is not a JSON object")
    return value
