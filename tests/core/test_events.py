"""CloudEvent payloads (dicom_pipeline.events): storage objects and Pub/Sub messages, bad ones permanent."""

from __future__ import annotations

import base64

import pytest

from dicom_pipeline import events
from dicom_pipeline.errors import PermanentError


def test_storage_data_accepts_string_and_number_sizes() -> None:
    assert events.storage_object({"bucket": "b", "name": "n", "size": "12"}).size == 12
    assert events.storage_object({"bucket": "b", "name": "n", "size": 12, "generation": 5}).generation == "5"
    with pytest.raises(PermanentError, match="size"):
        events.storage_object({"bucket": "b", "name": "n", "size": "big"})
    with pytest.raises(PermanentError, match="bucket or name"):
        events.storage_object({"name": "n"})


def test_pubsub_message_parsing() -> None:
    data = {"message": {"data": base64.b64encode(b"hello").decode(), "messageId": "42", "attributes": {"a": 1}}}
    message = events.pubsub_message(data, "ev")
    assert (message.data, message.message_id, message.attributes) == (b"hello", "42", {"a": "1"})
    for bad, reason in [({}, "no message"), ({"message": {"data": "%%%"}}, "base64"),
                        ({"message": {"data": 5}}, "base64"), ("x", "no message")]:
        with pytest.raises(PermanentError, match=reason):
            events.pubsub_message(bad, "ev")
