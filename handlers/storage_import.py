"""Import function: one finalized object → dicomStores.import of that object.

The object arrives as a `google.cloud.storage.object.v1.finalized` CloudEvent (Eventarc, the local stack) or
as a Cloud Storage finalize notification pushed by Pub/Sub (the Terraform deployment).
"""

from __future__ import annotations

import logging

import functions_framework
from cloudevents.http import CloudEvent

from dicom_pipeline import events, importer, logs, policy


# functions-framework types an event function as returning None; the outcome returned is for direct callers.
@functions_framework.cloud_event  # type: ignore[arg-type]
def import_dicom_object(cloud_event: CloudEvent) -> str | None:
    event_id = str(cloud_event["id"])
    event_type = cloud_event["type"]
    data = cloud_event.data
    if not (event_type == events.STORAGE_FINALIZED
            or (event_type == events.PUBSUB_PUBLISHED and events.is_finalize_notification(data))):
        logs.configure()
        logs.log(logging.INFO, f"import: ignored event type {event_type}", event_id=event_id)
        return None
    # The dead-letter record names the object and the generation the event was for (requeue reads them).
    subject = events.object_subject(data)
    return policy.run("import", event_id, subject, lambda settings: importer.import_object(
        settings, events.finalized_object(event_type, data, event_id), event_id))
