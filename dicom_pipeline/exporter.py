"""Export instances' metadata to BigQuery, once per Pub/Sub message.

Notifications for WRITE_APPEND that arrive together (a burst: gen2 serves many requests per instance) share
one export operation whose filter lists all their instances: one operation per burst instead of one per
instance, which is what keeps a large import inside the API's operation quota.

Each message is claimed once (`idempotency/export/<hash of messageId>.json`, create-if-absent), and the claim
names its batch's record (`idempotency/export/batch-<token>.json`), which holds the operation and, once it
is done, its outcome: one write per message and two per batch, so a redelivery still follows the operation
that exported its message and never starts another.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import cloud_storage as storage  # the module was renamed; the body keeps its short name
from . import healthcare, logs, operation_logs
from .batching import Coalescer, SharedCall
from .config import WRITE_DISPOSITIONS, Settings
from .errors import PermanentError, TransientError, classify_operation_error
from .events import PubSubMessage, json_object
from .names import BigQueryTableUri, DicomStoreName, GcsUri, InstancePath, filter_line
from .policy import now, with_operation

# Notification actions that store a new instance; others (storage-class changes, deletes) add no row.
_STORING_ACTIONS = {"StoreInstances", "ImportDicomData"}
# A claim whose batch has no record (no export started) older than this belongs to a crashed invocation
# and may be taken over.
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


@dataclass(frozen=True, eq=False)
class _Message:
    """One delivery's share of an export: compared by identity, so two deliveries of one message differ."""

    record_name: str  # its idempotency claim
    message_id: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _Started:
    """What a batch's leader did for everyone: the claims it won, the operation and the batch's record."""

    owners: dict[str, tuple[_Message, int]]  # claim name → the delivery that holds it, claim generation
    failed: dict[str, BaseException]  # claim name → why it could not be created (that delivery raises it)
    operation: dict[str, Any] | None  # None: every claim was held already, nothing was started
    record: str | None  # gs://STAGING/idempotency/export/batch-<token>.json: the operation and its outcome
    record_generation: int | None


def export_message(settings: Settings, message: PubSubMessage, event_id: str) -> str:
    """Export what the message asks for, at most once per message id; returns the outcome."""
    request = parse_message(message, settings)
    if request is None:
        logs.log(logging.INFO, f"export: skipped: notification action {message.attributes.get('action')!r} "
                 "adds no row", event_id=event_id, outcome="skipped")
        return "skipped"
    instance = request.resource_paths[0] if len(request.resource_paths) == 1 else None
    key = hashlib.sha256(message.message_id.encode()).hexdigest()[:40]
    mine = _Message(f"idempotency/export/{key}.json", message.message_id, request.resource_paths)
    for _attempt in range(2):  # a second claim only after releasing a crashed invocation's stale one
        started, batch = _claim_and_start(settings, request, mine)
        if mine.record_name in started.failed:
            raise started.failed[mine.record_name]
        owner = started.owners.get(mine.record_name)
        if owner is not None and owner[0] is mine:
            operation = _wait_and_settle(settings, started)
            return _finish(settings, mine.record_name, owner[1], request, operation, event_id, instance, batch)
        if owner is not None:  # a redelivery served in the same batch as the delivery holding the claim
            operation = _wait_and_settle(settings, started)
            if "error" in operation and not _is_permanent(operation):
                # Its holder releases the claim and raises; acknowledging this delivery would end the message.
                raise TransientError("the export this message belongs to failed; retry")
            return _duplicate(event_id, instance, started.record, "in the same batch as another delivery")
        outcome = _follow_existing(settings, mine.record_name, event_id, instance)
        if outcome is not None:
            return outcome
    raise TransientError("another invocation took over the stale export claim; retry")


def _claim_and_start(settings: Settings, request: ExportRequest, mine: _Message) -> tuple[_Started, int]:
    """Claim and start `mine`'s export, batched with what arrives together; how many messages share it."""
    if request.whole_store or request.write_disposition != "WRITE_APPEND" or settings.export_batch_window <= 0:
        # Only appends batch: two WRITE_TRUNCATE or WRITE_EMPTY requests merged would mean something else.
        return _start_claimed(settings, request.store, request.table, request.write_disposition, [mine]), 1
    return _batches.submit((settings, request.store, request.table), mine, settings.export_batch_window,
                           settings.export_batch_max)


def _export_batch(key: Any, items: list[_Message]) -> _Started:
    settings, store, table = key
    return _start_claimed(settings, store, table, "WRITE_APPEND", items)


_CLAIM_THREADS = 8  # a batch's claims are created in parallel: each a short conditional write


def _start_claimed(settings: Settings, store: DicomStoreName, table: BigQueryTableUri, disposition: str,
                   items: list[_Message]) -> _Started:
    """Claim each message (create-if-absent; the first delivery of a message wins), then start one export
    of the claimed messages' instances and record it once for the whole batch.

    A claim names the batch's record, not the operation: one write per message instead of three (claim,
    operation, outcome), and the operation and its outcome are written once per batch.
    """
    record = f"idempotency/export/batch-{secrets.token_hex(16)}.json"
    claim = {"status": "claimed", "batch": record, "table": str(table), "time": now(), "started": time.time()}

    def take(item: _Message) -> int | BaseException | None:
        try:
            return storage.create_if_absent(settings, settings.staging_bucket, item.record_name,
                                            {**claim, "message_id": item.message_id})
        except Exception as exc:  # that message fails alone; the batch goes on with the others
            return exc

    owners: dict[str, tuple[_Message, int]] = {}
    failed: dict[str, BaseException] = {}
    unique = list({item.record_name: item for item in reversed(items)}.values())  # the first delivery of each
    if len(unique) == 1:
        taken = [take(unique[0])]
    else:
        with ThreadPoolExecutor(min(_CLAIM_THREADS, len(unique)), thread_name_prefix="export-claim") as pool:
            taken = list(pool.map(take, unique))
    for item, generation in zip(unique, taken, strict=True):
        if isinstance(generation, BaseException):
            failed[item.record_name] = generation
        elif generation is not None:
            owners[item.record_name] = (item, generation)
    if not owners:
        return _Started(owners, failed, None, None, None)
    try:
        lines = tuple(dict.fromkeys(line for owner, _ in owners.values() for line in owner.lines))
        operation = _start(settings, store, table, disposition, lines)  # no lines: an explicit whole-store export
    except BaseException:
        # Nothing was started: release the claims so the platform's retry can do the work.
        for name, (_, generation) in owners.items():
            storage.delete(settings, settings.staging_bucket, name, if_generation_match=generation)
        raise
    record_generation = storage.create_if_absent(
        settings, settings.staging_bucket, record,
        {"status": "pending", "operation": operation.get("name"), "table": str(table), "messages": len(owners),
         "time": now()})
    return _Started(owners, failed, operation, record, record_generation)


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


_batches: Coalescer[_Message, _Started] = Coalescer(_export_batch)
_settling: SharedCall[dict[str, Any]] = SharedCall()


def _wait_and_settle(settings: Settings, started: _Started) -> dict[str, Any]:
    """Wait for the batch's operation and record its outcome in the batch's record: one poller and one write
    for every message of the batch, however many deliveries wait on it."""
    operation = started.operation or {}

    def run() -> dict[str, Any]:
        done = healthcare.wait(settings.healthcare_api_endpoint, operation, settings.operation_wait_seconds)
        if done.get("done"):
            _settle_batch(settings, str(started.record), started.record_generation, done)
        return done

    return _settling.call(started.record, run)  # every caller holds or shares a claim: the batch has a record


def _settle_batch(settings: Settings, record: str, generation: int | None, operation: dict[str, Any]) -> None:
    """Record a done operation's outcome, only over the generation seen: whoever settles first records it, a
    later attempt changes nothing. A failure a retry may mend is not recorded: the claims' holders release
    them and raise, and a redelivery that reads this record meanwhile must raise too, not answer duplicate
    (its acknowledgement would end the message whose export failed)."""
    status = "succeeded"
    if "error" in operation:
        if not _is_permanent(operation):
            return
        status = "failed"
    storage.replace_json(settings, settings.staging_bucket, record,
                         {"status": status, "operation": operation.get("name"),
                          "finished": datetime.now(UTC).isoformat()}, generation)


def _is_permanent(operation: dict[str, Any]) -> bool:
    return isinstance(classify_operation_error(operation["error"], "export"), PermanentError)


def _follow_existing(settings: Settings, record_name: str, event_id: str, instance: str | None) -> str | None:
    """Another delivery holds this message's claim: what became of its export. None when the claim was a
    crashed invocation's and has been released, so this delivery may claim the message itself."""
    found = storage.read_json(settings, settings.staging_bucket, record_name)
    if found is None:
        raise TransientError("export idempotency record vanished while being read; retry")
    record, generation = found
    status, batch_name = record.get("status"), record.get("batch")
    if status in ("succeeded", "failed"):
        return _duplicate(event_id, instance, record.get("operation"), f"already handled ({status})")
    batch = storage.read_json(settings, settings.staging_bucket, batch_name) if batch_name else None
    if batch is not None:
        (batch_record, batch_generation) = batch
        name = batch_record.get("operation")
        if batch_record.get("status") in ("succeeded", "failed"):
            return _duplicate(event_id, instance, name, f"already handled ({batch_record['status']})")
        operation = healthcare.get_operation(settings.healthcare_api_endpoint, name)
        if not operation.get("done"):
            logs.log(logging.WARNING, "export: redelivered message's operation still running; recorded as pending",
                     event_id=event_id, instance=instance, operation=name, outcome="pending")
            return "pending"
        if "error" in operation:  # the claim's holder releases it or records the failure: come back then
            raise TransientError("the export this message belongs to failed; retry once its claim is settled")
        _settle_batch(settings, batch_name, batch_generation, operation)  # its holder may be gone
        return _duplicate(event_id, instance, name, "exported by another delivery")
    if time.time() - float(record.get("started", 0)) < STALE_CLAIM_SECONDS:
        # Another delivery holds the claim and has not started its export yet: come back later.
        raise TransientError("export of this message is in progress in another invocation")
    storage.delete(settings, settings.staging_bucket, record_name, if_generation_match=generation)
    return None


def _finish(settings: Settings, record_name: str, generation: int, request: ExportRequest, operation: dict[str, Any],
            event_id: str, instance: str | None, batch: int) -> str:
    """This delivery holds the claim: report the batch's outcome for its message."""
    name = operation.get("name")
    if not operation.get("done"):
        logs.log(logging.WARNING, "export: operation still running at the wait bound; recorded as pending",
                 event_id=event_id, instance=instance, operation=name, outcome="pending")
        return "pending"
    if "error" in operation:
        # A batch's operation fails for all its messages; the log at logsUrl names the instances that failed.
        what = "export to BigQuery" if batch == 1 else \
            f"export to BigQuery (one operation for {batch} notifications served together)"
        error = operation_logs.failure(settings, operation, what)
        if not isinstance(error, PermanentError):  # a retry may succeed: release the claim
            storage.delete(settings, settings.staging_bucket, record_name, if_generation_match=generation)
        raise with_operation(error, name)  # a permanent failure stays recorded in the batch's record
    logs.log(logging.INFO, "export: succeeded", event_id=event_id, instance=instance, operation=name,
             table=str(request.table), outcome="succeeded", batch=batch)
    return "succeeded"


def _duplicate(event_id: str, instance: str | None, operation: str | None, why: str) -> str:
    logs.log(logging.INFO, f"export: redelivered message: {why}", event_id=event_id, instance=instance,
             operation=operation, outcome="duplicate")
    return "duplicate"
