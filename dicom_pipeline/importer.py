"""Import one finalized Cloud Storage object into the DICOM store.

Objects whose events are served together (a burst: gen2 serves many requests per instance) share one import
operation: each is copied, at the generation its event names, under a prefix private to the batch, and one
`dicomStores.import` of `gs://STAGING_BUCKET/staging/import/batch-<hash>/*` reads exactly those copies. One
operation and one poller per burst instead of one per object keeps a large upload inside the API's operation
quota and costs far less. If a batch's operation fails, each object is imported again on its own, so its
outcome (and dead-letter reason) is its own: an instance the batch already stored is identical and ignored by
the store, with no second notification.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import cloud_storage, healthcare, logs, operation_logs
from .batching import Coalescer
from .config import Settings
from .errors import PermanentError
from .events import StorageObject
from .names import GcsUri
from .policy import now, with_operation

_COPY_THREADS = 8  # a batch's copies run in parallel: server-side copies, each a short request


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
    operation: dict[str, Any] | None  # None: a batch's copy of this object failed (below)
    previous = cloud_storage.read_json(settings, settings.staging_bucket, record_name)
    if previous is not None:
        record, _ = previous
        if record.get("status") == "succeeded":
            logs.log(logging.INFO, "import: already imported", event_id=event_id, object=obj.path,
                     operation=record.get("operation"), outcome="already-imported")
            return "already-imported"
        if record.get("status") == "pending" and record.get("operation"):
            # Never re-import blindly: follow the operation that is already running.
            operation = healthcare.get_operation(settings.healthcare_api_endpoint, record["operation"])
            return _finish(settings, obj, event_id, record_name, operation, int(record.get("batch") or 1),
                           key)

    marker = cloud_storage.read_preamble_marker(settings, obj.bucket, obj.name, obj.generation)
    if marker is None:
        logs.log(logging.INFO, f"import: skipped: generation {obj.generation} no longer exists (overwritten or"
                 " deleted)", event_id=event_id, object=obj.path, outcome="skipped")
        return "skipped"
    if marker != b"DICM":
        raise PermanentError(f"not a DICOM Part-10 file: no DICM marker at byte 128 of {obj.path}")

    if settings.import_batch_window <= 0:
        operation, batch = _import_alone(settings, obj, key), 1
    else:
        (operation, left_out), batch = _batches.submit(
            (settings, settings.dicom_store, settings.import_storage_class), _Item(obj, key),
            settings.import_batch_window, settings.import_batch_max)
        if operation is None or key in left_out:  # its copy failed: on its own, it gets its own outcome
            operation, batch = _import_alone(settings, obj, key), 1
    return _finish(settings, obj, event_id, record_name, _wait(settings, operation), batch, key)


def _wait(settings: Settings, operation: dict[str, Any]) -> dict[str, Any]:
    """Every object of a batch waits for the same operation: one poller, not one per object."""
    return healthcare.wait_shared(settings.healthcare_api_endpoint, operation, settings.operation_wait_seconds)


@dataclass(frozen=True)
class _Item:
    obj: StorageObject
    key: str  # hash of bucket/name#generation: names the copy and the outcome record


def _source(settings: Settings, obj: StorageObject, key: str) -> GcsUri:
    """What the import of exactly this object reads: the object, or a copy under a safe name when its name
    has *, ? or [ (which the import reads as a pattern)."""
    source = GcsUri(obj.bucket, obj.name)
    return GcsUri(settings.staging_bucket, f"staging/import/{key}.dcm") if source.has_wildcard else source


def _import_alone(settings: Settings, obj: StorageObject, key: str) -> dict[str, Any]:
    """Start the import of exactly this object."""
    source = _source(settings, obj, key)
    if source != GcsUri(obj.bucket, obj.name):
        cloud_storage.copy(settings, obj.bucket, obj.name, obj.generation, source.bucket, source.name)
    return healthcare.import_dicom(settings.healthcare_api_endpoint, settings.dicom_store, source,
                                   settings.import_storage_class)


def _import_batch(batch_key: Any, items: list[_Item]) -> tuple[dict[str, Any] | None, set[str]]:
    """Start one import of exactly these objects: the operation (None if nothing was copied) and the keys of
    the objects left out because their copy failed (e.g. the generation was overwritten since the event)."""
    settings, store, storage_class = batch_key
    unique = list({item.key: item for item in items}.values())  # a redelivery served with its original
    if len(unique) == 1:
        return _import_alone(settings, unique[0].obj, unique[0].key), set()
    # Named by content: a retried batch of the same objects writes the same copies.
    digest = hashlib.sha256("\n".join(sorted(item.key for item in unique)).encode()).hexdigest()[:40]
    prefix = f"staging/import/batch-{digest}/"

    def copy(item: _Item) -> str | None:
        try:
            cloud_storage.copy(settings, item.obj.bucket, item.obj.name, item.obj.generation, settings.staging_bucket,
                         f"{prefix}{item.key}.dcm")
        except Exception:  # that object goes alone and meets its error there
            return item.key
        return None

    with ThreadPoolExecutor(min(_COPY_THREADS, len(unique)), thread_name_prefix="import-copy") as pool:
        left_out = {key for key in pool.map(copy, unique) if key is not None}
    if len(left_out) == len(unique):
        return None, left_out
    # `*` stops at `/`: the pattern matches this batch's copies and nothing else.
    operation = healthcare.import_dicom(settings.healthcare_api_endpoint, store,
                                        GcsUri(settings.staging_bucket, f"{prefix}*"), storage_class)
    return operation, left_out


_batches: Coalescer[_Item, tuple[dict[str, Any] | None, set[str]]] = Coalescer(_import_batch)


def _finish(settings: Settings, obj: StorageObject, event_id: str, record_name: str,
            operation: dict[str, Any], batch: int, key: str) -> str:
    if batch > 1 and operation.get("done") and "error" in operation:
        # Which of the batch's files failed is only in the operation's log: this object's own import says
        # whether it is one of them (a file the batch stored is identical now, and ignored).
        logs.log(logging.INFO, f"import: the operation shared by {batch} objects failed; importing this one alone",
                 event_id=event_id, object=obj.path, operation=operation.get("name"))
        operation, batch = _wait(settings, _import_alone(settings, obj, key)), 1
    name = operation.get("name")
    record: dict[str, Any] = {"object": obj.path, "generation": obj.generation, "operation": name,
                              "event_id": event_id, "time": now()}
    if batch > 1:
        record["batch"] = batch
    if not operation.get("done"):
        record["status"] = "pending"
        cloud_storage.replace_json(settings, settings.staging_bucket, record_name, record)
        logs.log(logging.WARNING, "import: operation still running at the wait bound; recorded as pending",
                 event_id=event_id, object=obj.path, operation=name, outcome="pending")
        return "pending"
    if "error" in operation:
        cloud_storage.delete(settings, settings.staging_bucket, record_name)
        # The file's own reason is in Cloud Logging: the source it was imported from names its entry.
        raise with_operation(operation_logs.failure(settings, operation, f"import of {obj.path}",
                                                    str(_source(settings, obj, key))), name)
    record["status"] = "succeeded"
    cloud_storage.replace_json(settings, settings.staging_bucket, record_name, record)
    logs.log(logging.INFO, "import: succeeded", event_id=event_id, object=obj.path, operation=name,
             outcome="succeeded", store=str(settings.dicom_store))
    return "succeeded"
