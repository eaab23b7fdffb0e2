"""Import function: `google.cloud.storage.object.v1.finalized` → dicomStores.import of that one object."""

from __future__ import annotations

import logging

import functions_framework
from cloudevents.http import CloudEvent

from dicom_pipeline import events, importer, logs, policy


# functions-framework types an event function as returning None; the outcome returned is for direct callers.
@functions_framework.cloud_event  # type: ignore[arg-type]
def import_dicom_object(cloud_event: CloudEvent) -> str | None:
    event_id = str(cloud_event["id"])
    if cloud_event["type"] != events.STORAGE_FINALIZED:
        logs.configure()
        logs.log(logging.INFO, f"import: ignored event type {cloud_event['type']}", event_id=event_id)
        return None
    data = cloud_event.data
    name = data.get("name") if isinstance(data, dict) else None
    subject = {"object": f"gs://{data.get('bucket')}/{name}" if name else None}
    return policy.run("import", event_id, subject,
                      lambda settings: importer.import_object(settings, events.storage_object(data), event_id))
