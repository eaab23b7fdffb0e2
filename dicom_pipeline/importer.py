"""Import one finalized Cloud Storage object into the DICOM store."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from . import healthcare, logs, storage
from .config import Settings
from .errors import PermanentError, classify_operation_error
from .events import StorageObject
from .names import GcsUri
from .policy import now, with_operation


def skip_reason(obj: StorageObject, settings: Settings) -> str | None:
    """Why the object is not an import candidate, or None if it is."""
    lower = obj.name.lower()
    if not lower.endswith(settings.import_suffixes):
        return f"suffix not in {','.join(settings.import_suffixes)}"
    if obj.size == 0:
        return "zero-size object"
    # gsutil/gcloud parallel composite uploads write components and temporary objects before composing.
    base = obj.name.rsplit("/", 1)[-1]
    if "/gcloud/tmp/parallel_composite_uploads/" in f"/{obj.name}" or base.startswith(".gsutil_tmp"):
        return "temporary composite-upload object"
    return None


def import_object(settings: Settings, obj: StorageObject, event_id: str) -> str:
    """Import exactly this object; returns the outcome (skipped, succeeded, pending, already-imported)."""
    reason = skip_reason(obj, settings)
    if reason is not None:
        logs.log(logging.INFO, f"import: skipped: {reason}", event_id=event_id, object=obj.path, outcome="skipped")
        return "skipped"

    key = hashlib.sha256(f"{obj.bucket}/{obj.name}#{obj.generation}".encode()).hexdigest()[:40]
    record_name = f"outcomes/import/{key}.json"
    previous = storage.read_json(settings, settings.staging_bucket, record_name)
    if previous is not None:
        record, _ = previous
        if record.get("status") == "succeeded":
            logs.log(logging.INFO, "import: already imported", event_id=event_id, object=obj.path,
                     operation=record.get("operation"), outcome="already-imported")
            return "already-imported"
        if record.get("status") == "pending" and record.get("operation"):
            # Never re-import blindly: follow the operation that is already running.
            operation = healthcare.get_operation(settings.healthcare_api_endpoint, record["operation"])
            return _finish(settings, obj, event_id, record_name, operation)

    marker = storage.read_preamble_marker(settings, obj.bucket, obj.name, obj.generation)
    if marker is None:
        logs.log(logging.INFO, f"import: skipped: generation {obj.generation} no longer exists (overwritten or"
                 " deleted)", event_id=event_id, object=obj.path, outcome="skipped")
        return "skipped"
    if marker != b"DICM":
        raise PermanentError(f"not a DICOM Part-10 file: no DICM marker at byte 128 of {obj.path}")

    source = GcsUri(obj.bucket, obj.name)
    if source.has_wildcard:
        # The import reads *, ? and [ as a pattern; a copy under a safe name imports this object and no other.
        staged = GcsUri(settings.staging_bucket, f"staging/import/{key}.dcm")
        storage.copy(settings, obj.bucket, obj.name, obj.generation, staged.bucket, staged.name)
        source = staged
    operation = healthcare.import_dicom(settings.healthcare_api_endpoint, settings.dicom_store, source,
                                        settings.import_storage_class)
    operation = healthcare.wait(settings.healthcare_api_endpoint, operation, settings.operation_wait_seconds)
    return _finish(settings, obj, event_id, record_name, operation)


def _finish(settings: Settings, obj: StorageObject, event_id: str, record_name: str,
            operation: dict[str, Any]) -> str:
    name = operation.get("name")
    record: dict[str, Any] = {"object": obj.path, "generation": obj.generation, "operation": name,
                              "event_id": event_id, "time": now()}
    if not operation.get("done"):
        record["status"] = "pending"
        storage.replace_json(settings, settings.staging_bucket, record_name, record)
        logs.log(logging.WARNING, "import: operation still running at the wait bound; recorded as pending",
                 event_id=event_id, object=obj.path, operation=name, outcome="pending")
        return "pending"
    if "error" in operation:
        storage.delete(settings, settings.staging_bucket, record_name)
        raise with_operation(classify_operation_error(operation["error"], f"import of {obj.path}",
                                                      operation.get("metadata", {}).get("logsUrl")), name)
    record["status"] = "succeeded"
    storage.replace_json(settings, settings.staging_bucket, record_name, record)
    logs.log(logging.INFO, "import: succeeded", event_id=event_id, object=obj.path, operation=name,
             outcome="succeeded", store=str(settings.dicom_store))
    return "succeeded"
