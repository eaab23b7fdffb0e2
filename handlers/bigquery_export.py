"""Export function: `google.cloud.pubsub.topic.v1.messagePublished` → dicomStores.export to BigQuery."""

from __future__ import annotations

import logging

import functions_framework
from cloudevents.http import CloudEvent

from dicom_pipeline import events, exporter, logs, policy


# functions-framework types an event function as returning None; the outcome returned is for direct callers.
@functions_framework.cloud_event  # type: ignore[arg-type]
def export_dicom_metadata(cloud_event: CloudEvent) -> str | None:
    event_id = str(cloud_event["id"])
    if cloud_event["type"] != events.PUBSUB_PUBLISHED:
        logs.configure()
        logs.log(logging.INFO, f"export: ignored event type {cloud_event['type']}", event_id=event_id)
        return None
    data = cloud_event.data
    message = data.get("message") if isinstance(data, dict) else None
    # The dead-letter record keeps the message as delivered (an instance path or an operator request, no PHI).
    subject = {"message": message if isinstance(message, dict) else data}
    return policy.run("export", event_id, subject,
                      lambda settings: exporter.export_message(settings, events.pubsub_message(data, event_id),
                                                               event_id))
