"""Export instances' metadata to BigQuery, once per Pub/Sub message.

Notifications for WRITE_APPEND that arrive together (a burst: gen2 serves many requests per instance) share
one export operation whose filter lists all their instances: one operation per burst instead of one per
instance, which is what keeps a large import inside the API's operation quota. Each message keeps its own
idempotency record, so a redelivery still follows the operation that exported it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import healthcare, logs, storage
from .batching import Coalescer
from .config import WRITE_DISPOSITIONS, Settings
from .errors import PermanentError, TransientError, classify_operation_error
from .events import PubSubMessage, json_object
from .names import BigQueryTableUri, DicomStoreName, GcsUri, InstancePath, filter_line
from .policy import now, with_operation

# Notification actions that store a new instance; others (storage-class changes, deletes) add no row.
_STORING_ACTIONS = {"StoreInstances", "ImportDicomData"}
# A claim with no operation older than this belongs to a crashed invocation and may be taken over.
STALE_CLAIM_SECONDS = 600.0

# Collapses the rare duplicate rows a race can leave: the newest row per instance.
DEDUP_QUERY = """\
SELECT * EXCEPT (row_num)
FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID ORDER BY LastUpdated DESC) AS row_num
  FROM `{table}`
)
WHERE row_num = 1"""


def dedup_query(table: BigQueryTableUri) -> str:
    return DEDUP_QUERY.format(table=f"{table.project}.{table.dataset}.{table.table}")


@dataclass(frozen=True)
class ExportRequest:
    store: DicomStoreName
    table: BigQueryTableUri
    write_disposition: str
    resource_paths: tuple[str, ...]  # filter lines; empty only for an explicit whole-store export
    whole_store: bool = False


def parse_message(message: PubSubMessage, settings: Settings) -> ExportRequest | None:
    """A notification or an explicit JSON request → ExportRequest; None for notifications that add no row."""
    text = message.data.strip()
    if text.startswith(b"{"):
        return _explicit_request(json_object(text, "export request"), settings)
    try:
        path = InstancePath.from_string(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise PermanentError("message data is neither a DICOM instance resource path nor a JSON export request")\
            from None
    action = message.attributes.get("action")
    if action is not None and action not in _STORING_ACTIONS:
        return None
    return ExportRequest(path.store, _table(settings), settings.write_disposition, (path.filter_line,))


def _table(settings: Settings, given: Any = None) -> BigQueryTableUri:
    if given is not None:
        if not isinstance(given, str):
            raise PermanentError("export request: table must be a string bq://PROJECT.DATASET.TABLE")
        try:
            return BigQueryTableUri.from_string(given)
        except ValueError as exc:
            raise PermanentError(f"export request: table: {exc}") from None
    if settings.bigquery_table is None:
        from .errors import ConfigError

        raise ConfigError("BIGQUERY_TABLE is not set and the message names no table")
    return settings.bigquery_table


def _explicit_request(body: dict[str, Any], settings: Settings) -> ExportRequest:
    store = settings.dicom_store
    if "store" in body:
        try:
            store = DicomStoreName.from_string(str(body["store"]))
        except ValueError as exc:
            raise PermanentError(f"export request: store: {exc}") from None
    disposition = str(body.get("writeDisposition", settings.write_disposition)).upper()
    if disposition not in WRITE_DISPOSITIONS:
        raise PermanentError(f"export request: writeDisposition must be one of {', '.join(WRITE_DISPOSITIONS)}")
    paths = body.get("resourcePaths")
    whole = body.get("wholeStore") is True
    if whole and paths:
        raise PermanentError("export request: give resourcePaths or wholeStore, not both")
    if not whole:
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise PermanentError("export request: resourcePaths must be a non-empty list of strings "
                                 "(or set wholeStore: true to export the whole store)")
        try:
            lines = tuple(dict.fromkeys(filter_line(p) for p in paths))
        except ValueError as exc:
            raise PermanentError(f"export request: {exc}") from None
    else:
        lines = ()
    return ExportRequest(store, _table(settings, body.get("table")), disposition, lines, whole)


def export_message(settings: Settings, message: PubSubMessage, event_id: str) -> str:
    """Export what the message asks for, at most once per message id; returns the outcome."""
    request = parse_message(message, settings)
    if request is None:
        logs.log(logging.INFO, f"export: skipped: notification action {message.attributes.get('action')!r} "
                 "adds no row", event_id=event_id, outcome="skipped")
        return "skipped"
    instance = request.resource_paths[0] if len(request.resource_paths) == 1 else None
    key = hashlib.sha256(message.message_id.encode()).hexdigest()[:40]
    record_name = f"idempotency/export/{key}.json"
    claim = {"status": "started", "message_id": message.message_id, "time": now(), "started": time.time()}
    generation = storage.create_if_absent(settings, settings.staging_bucket, record_name, claim)
    if generation is None:
        outcome = _follow_existing(settings, record_name, event_id, instance)
        if outcome is not None:
            return outcome
        generation = _take_over(settings, record_name, claim)

    try:
        operation, batch = _start_export(settings, request)
    except BaseException:
        # Nothing was started: release the claim so the platform's retry can do the work.
        storage.delete(settings, settings.staging_bucket, record_name, if_generation_match=generation)
        raise
    claim.update(status="pending", operation=operation.get("name"), table=str(request.table))
    generation = storage.replace_json(settings, settings.staging_bucket, record_name, claim, generation)
    # Every message of a batch waits for the same operation: one poller, not one per message.
    operation = healthcare.wait_shared(settings.healthcare_api_endpoint, operation, settings.operation_wait_seconds)
    return _finish(settings, record_name, claim, generation, operation, event_id, instance, batch)


def _start_export(settings: Settings, request: ExportRequest) -> tuple[dict[str, Any], int]:
    """The started operation that exports `request`, and how many messages share it."""
    if request.whole_store or request.write_disposition != "WRITE_APPEND" or settings.export_batch_window <= 0:
        # Only appends batch: two WRITE_TRUNCATE or WRITE_EMPTY requests merged would mean something else.
        return _start(settings, request.store, request.table, request.write_disposition, request.resource_paths), 1
    return _batches.submit((settings, request.store, request.table), request.resource_paths,
                           settings.export_batch_window, settings.export_batch_max)


def _export_batch(key: Any, items: list[tuple[str, ...]]) -> dict[str, Any]:
    settings, store, table = key
    lines = tuple(dict.fromkeys(line for paths in items for line in paths))  # an instance once per filter
    return _start(settings, store, table, "WRITE_APPEND", lines)


def _start(settings: Settings, store: DicomStoreName, table: BigQueryTableUri, disposition: str,
           lines: tuple[str, ...]) -> dict[str, Any]:
    filter_uri = None
    if lines:
        # Named by content: a retried batch of the same instances rewrites the same file.
        text = "\n".join(lines) + "\n"
        name = hashlib.sha256(text.encode()).hexdigest()[:40]
        filter_uri = GcsUri(settings.staging_bucket, f"filters/export/{name}.txt")
        storage.write_text(settings, filter_uri.bucket, filter_uri.name, text)
    return healthcare.export_to_bigquery(settings.healthcare_api_endpoint, store, table, disposition, filter_uri)


_batches: Coalescer[tuple[str, ...], dict[str, Any]] = Coalescer(_export_batch)


def _follow_existing(settings: Settings, record_name: str, event_id: str, instance: str | None) -> str | None:
    found = storage.read_json(settings, settings.staging_bucket, record_name)
    if found is None:
        raise TransientError("export idempotency record vanished while being read; retry")
    record, generation = found
    status, name = record.get("status"), record.get("operation")
    if status in ("succeeded", "failed"):
        logs.log(logging.INFO, f"export: redelivered message already handled ({status})", event_id=event_id,
                 instance=instance, operation=name, outcome="duplicate")
        return "duplicate"
    if status == "pending" and name:
        operation = healthcare.get_operation(settings.healthcare_api_endpoint, name)
        return _finish(settings, record_name, record, generation, operation, event_id, instance)
    if time.time() - float(record.get("started", 0)) < STALE_CLAIM_SECONDS:
        # Another delivery holds the claim and has not started its export yet: come back later.
        raise TransientError("export of this message is in progress in another invocation")
    return None


def _take_over(settings: Settings, record_name: str, claim: dict[str, Any]) -> int:
    found = storage.read_json(settings, settings.staging_bucket, record_name)
    if found is None:
        raise TransientError("export idempotency record vanished during takeover; retry")
    generation = storage.replace_json(settings, settings.staging_bucket, record_name, claim, found[1])
    if generation is None:
        raise TransientError("another invocation took over the stale export claim")
    return generation


def _finish(settings: Settings, record_name: str, record: dict[str, Any], generation: int | None,
            operation: dict[str, Any], event_id: str, instance: str | None, batch: int | None = None) -> str:
    """Settle the pending record. Only over the generation this invocation saw: when a redelivery and the
    original both see the operation done, one records the outcome and the other answers "duplicate"."""
    name = operation.get("name")
    if not operation.get("done"):
        logs.log(logging.WARNING, "export: operation still running at the wait bound; recorded as pending",
                 event_id=event_id, instance=instance, operation=name, outcome="pending")
        return "pending"
    if "error" in operation:
        # A batch's operation fails for all its messages; the log at logsUrl names the instances that failed.
        what = "export to BigQuery" if not batch or batch == 1 else \
            f"export to BigQuery (one operation for {batch} notifications served together)"
        error = classify_operation_error(operation["error"], what, operation.get("metadata", {}).get("logsUrl"))
        if isinstance(error, PermanentError):
            if storage.replace_json(settings, settings.staging_bucket, record_name, {**record, "status": "failed"},
                                    generation) is None:
                return _settled_elsewhere(event_id, instance, name)
        else:  # a retry may succeed: release the claim
            storage.delete(settings, settings.staging_bucket, record_name, if_generation_match=generation)
        raise with_operation(error, name)
    if storage.replace_json(settings, settings.staging_bucket, record_name,
                            {**record, "status": "succeeded", "finished": datetime.now(UTC).isoformat()},
                            generation) is None:
        return _settled_elsewhere(event_id, instance, name)
    logs.log(logging.INFO, "export: succeeded", event_id=event_id, instance=instance, operation=name,
             table=record.get("table"), outcome="succeeded", batch=batch)
    return "succeeded"


def _settled_elsewhere(event_id: str, instance: str | None, operation: str | None) -> str:
    logs.log(logging.INFO, "export: another delivery of this message recorded its outcome first", event_id=event_id,
             instance=instance, operation=operation, outcome="duplicate")
    return "duplicate"
