"""dicomStores.export to BigQuery (bigqueryDestination) and streaming inserts (streamConfigs).

The rows come from each instance's stored DICOM JSON (never from its blob) through local_bigquery.schema and
land in the local DuckDB warehouse through local_bigquery.warehouse; this module holds the API rules in between:
request validation, `force` / `writeDisposition` (reference §4.4), counters and errors.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_bigquery.schema import (
    Converter,
    Field,
    SchemaConflict,
    encode_row,
    extra_fields,
    extra_values,
    json_schema_fields,
)
from local_bigquery.warehouse import (
    DatasetNotFound,
    TableRef,
    WarehouseBusy,
    dataset_exists,
    dataset_not_found_message,
    write_rows,
)

from ..dicom.parsing import with_number_texts
from ..errors import AlreadyExists, ApiError, FailedPrecondition, InvalidArgument, NotFound
from ..names import DicomStoreName
from ..store.dicom_store import InstanceRecord, Storage
from .cloud_storage import GcsReader
from .export_selection import load_filter, select_records
from .operations import OperationContext

logger = logging.getLogger(__name__)

WRITE_DISPOSITIONS = ("WRITE_DISPOSITION_UNSPECIFIED", "WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND")
LEGACY = "LEGACY"  # writeDisposition absent: the legacy `force` flag decides
TABLE_URI_MAX = 2000
STREAMING_ROW_LIMIT = 1024 * 1024  # BigQuery's streaming-insert row limit (reference §5.6)
_CANCEL_CHECK_EVERY = 500  # instances converted between two looks at cancellation
_DATASET_CHECK_TIMEOUT = 1.0  # seconds the request waits for a locked warehouse file before leaving it to the write

# BigQuery names: project IDs (optionally domain-scoped, "example.com:proj"), dataset IDs of letters,
# digits and "_", table names of letters, marks, digits, connectors, dashes and spaces.
_PROJECT = re.compile(r"(?:[a-z0-9][a-z0-9.\-]*:)?[a-z0-9][a-z0-9\-_.]{0,127}")
_DATASET = re.compile(r"\w{1,1024}", re.ASCII)
_TABLE = re.compile(r"[\w\- ]{1,1024}")


class Unavailable(ApiError):
    http_status, status = 503, "UNAVAILABLE"


@dataclass(frozen=True)
class Destination:
    table: TableRef
    disposition: str  # LEGACY or one of WRITE_DISPOSITIONS
    force: bool
    include_source_store: bool
    json_schema: bool
    change_data_capture: bool


def parse_table_uri(uri: Any, what: str = "bigqueryDestination.tableUri") -> TableRef:
    if not uri:
        raise InvalidArgument(f"{what} is required: bq://PROJECT_ID.DATASET_ID.TABLE_ID")
    if not isinstance(uri, str):
        raise InvalidArgument(f"{what} must be a string")
    if len(uri) > TABLE_URI_MAX:
        raise InvalidArgument(f"{what} is {len(uri)} characters long; the limit is {TABLE_URI_MAX}")
    parts = uri.removeprefix("bq://").rsplit(".", 2) if uri.startswith("bq://") else []
    if len(parts) != 3:
        raise InvalidArgument(f"invalid {what} {uri[:300]!r}: expected bq://PROJECT_ID.DATASET_ID.TABLE_ID")
    project, dataset, table = parts
    for value, pattern, label in ((project, _PROJECT, "project ID"), (dataset, _DATASET, "dataset ID"),
                                  (table, _TABLE, "table ID")):
        if not pattern.fullmatch(value):
            raise InvalidArgument(f"invalid {what}: {value[:200]!r} is not a valid BigQuery {label}")
    return TableRef(project, dataset, table)


def _bool(destination: dict[str, Any], key: str) -> bool:
    value = destination.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"Invalid value at 'bigquery_destination.{_snake(key)}' (TYPE_BOOL), {json.dumps(value)}")
    return value


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def parse_destination(destination: dict[str, Any]) -> Destination:
    """Validate a GoogleCloudHealthcareV1DicomBigQueryDestination; InvalidArgument names what is wrong."""
    table = parse_table_uri(destination.get("tableUri"))
    disposition = LEGACY
    if "writeDisposition" in destination:
        disposition = destination["writeDisposition"]
        if disposition not in WRITE_DISPOSITIONS:
            raise InvalidArgument(f"Invalid value at 'bigquery_destination.write_disposition' (TYPE_ENUM),"
                                  f" {json.dumps(disposition)}: use one of {', '.join(WRITE_DISPOSITIONS)}")
    force = _bool(destination, "force")
    include_source_store = _bool(destination, "includeSourceStore")
    if "schemaFlattened" in destination and "schemaJson" in destination:
        raise InvalidArgument("bigqueryDestination: set at most one of schemaFlattened and schemaJson")
    json_schema = "schemaJson" in destination
    change_data_capture = "changeDataCaptureConfig" in destination
    if change_data_capture and not json_schema:
        raise InvalidArgument("bigqueryDestination.changeDataCaptureConfig is only supported with schemaJson")
    return Destination(table, disposition, force, include_source_store, json_schema, change_data_capture)


def _write_policy(dest: Destination) -> tuple[bool, Callable[[int | None], None] | None]:
    """(replace the table?, check of the table's row count before writing) for reference §4.4."""
    table = str(dest.table)

    def must_not_exist(rows: int | None) -> None:
        if rows is not None:
            raise AlreadyExists(f"BigQuery table {table} already exists; set force (gcloud --overwrite-table) to"
                                " overwrite it, or a writeDisposition (WRITE_APPEND, WRITE_TRUNCATE)")

    def must_be_empty(rows: int | None) -> None:
        if rows:
            raise AlreadyExists(f"BigQuery table {table} already exists and is not empty ({rows} rows);"
                                f" writeDisposition {dest.disposition} writes only to an empty table (use"
                                " WRITE_APPEND or WRITE_TRUNCATE)")

    if dest.disposition == LEGACY:
        return (True, None) if dest.force else (False, must_not_exist)
    if dest.disposition in ("WRITE_EMPTY", "WRITE_DISPOSITION_UNSPECIFIED"):
        return False, must_be_empty
    return dest.disposition == "WRITE_TRUNCATE", None


def _instance_path(store_name: str, record: InstanceRecord) -> str:
    return (f"{store_name}/dicomWeb/studies/{record.study_uid}/series/{record.series_uid}"
            f"/instances/{record.sop_uid}")


def _exact_metadata(record: InstanceRecord) -> dict[str, Any]:
    """The stored DICOM JSON with DS/IS values as the text the file held (BigQuery keeps it; reference §5.2)."""
    metadata = json.loads(record.metadata)
    if record.number_texts:
        with_number_texts(metadata, json.loads(record.number_texts))
    return metadata


@dataclass
class _Batch:
    fields: list[Field]
    lines: list[str]
    failures: list[tuple[InstanceRecord, str]]
    oversized: list[InstanceRecord]


def _convert(records: list[InstanceRecord], store_name: str, include_source_store: bool, json_schema: bool,
             with_type: bool, change_type: str, row_limit: int | None = None,
             on_progress: Callable[[int], None] | None = None) -> _Batch:
    converter = Converter()
    source = store_name if include_source_store else None
    lines: list[str] = []
    failures: list[tuple[InstanceRecord, str]] = []
    oversized: list[InstanceRecord] = []
    for index, record in enumerate(records):
        if on_progress is not None and index and index % _CANCEL_CHECK_EVERY == 0:
            on_progress(index)
        try:
            metadata = _exact_metadata(record)
            extras = extra_values(record.storage_class, record.size, record.metadata_size, record.update_time,
                                  source, change_type if with_type else None)
            if json_schema:
                row = converter.json_row(metadata, (record.study_uid, record.series_uid, record.sop_uid), extras)
            else:
                row = converter.flattened_row(metadata, extras)
            line = encode_row(row)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, UnicodeError) as exc:
            # One instance whose metadata cannot become a row fails alone; the message carries no values.
            failures.append((record, f"metadata could not be converted to a BigQuery row: {type(exc).__name__}"))
            continue
        if row_limit is not None and len(line.encode("utf-8")) > row_limit:
            oversized.append(record)
            continue
        lines.append(line)
    if json_schema:
        fields = json_schema_fields(include_source_store, with_type)
    else:
        if failures or oversized:
            # A row that failed or was skipped may have added columns before it stopped: rebuild the schema
            # from the rows that are written (rare, so converting them twice is fine).
            skipped = {id(r) for r, _ in failures} | {id(r) for r in oversized}
            converter = Converter()
            for record in records:
                if id(record) not in skipped:
                    converter.flattened_row(_exact_metadata(record), {})
        fields = converter.schema(extra_fields(include_source_store, with_type=with_type))
    return _Batch(fields, lines, failures, oversized)


def _write(data_dir: Any, dest_table: TableRef, batch: _Batch, *, replace: bool,
           check: Callable[[int | None], None] | None, keys: tuple[str, ...] = ()) -> None:
    try:
        write_rows(data_dir, dest_table, batch.fields, batch.lines, replace=replace, check=check,
                   replace_rows_matching=keys)
    except SchemaConflict as exc:
        raise FailedPrecondition(f"cannot write to BigQuery table {dest_table}: {exc}") from None
    except WarehouseBusy as exc:
        raise Unavailable(f"cannot write to BigQuery table {dest_table}: {exc}") from None
    except DatasetNotFound as exc:
        raise NotFound(_dataset_missing(dest_table, exc)) from None


def _dataset_missing(table: TableRef, reason: object) -> str:
    # The real API's words when it cannot see the dataset ("failed to verify dataset (projectID:…,
    # datasetID:…)"), then BigQuery's own ("Not found: Dataset p:d").
    return (f"failed to verify dataset (projectID:{table.project}, datasetID:{table.dataset}): {reason}; create the"
            " BigQuery dataset first (bq mk, Terraform google_bigquery_dataset, or locally"
            " `python -m local_bigquery create-dataset`)")


def check_dataset_exists(data_dir: Path, table: TableRef) -> None:
    """NotFound unless the destination's BigQuery dataset exists: exports never create datasets.

    When another process keeps the file locked, the operation's write checks again (and waits for the lock).
    """
    try:
        exists = dataset_exists(data_dir, table.project, table.dataset, timeout=_DATASET_CHECK_TIMEOUT)
    except WarehouseBusy:
        return
    if not exists:
        raise NotFound(_dataset_missing(table, dataset_not_found_message(table.project, table.dataset)))


def export_job(storage: Storage, gcs: GcsReader, data_dir: Path, store: DicomStoreName, store_id: int,
               destination: dict[str, Any], filter_uri: str | None) -> Callable[[OperationContext], None]:
    """Validate the destination now (InvalidArgument) and return the operation's job."""
    dest = parse_destination(destination)
    check_dataset_exists(data_dir, dest.table)
    replace, check = _write_policy(dest)
    store_name = str(store)
    uid_keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")

    def run(context: OperationContext) -> None:
        resource_filter = load_filter(gcs, filter_uri)
        records = select_records(storage, store_id, resource_filter)
        context.add(pending=len(records))
        batch = _convert(records, store_name, dest.include_source_store, dest.json_schema,
                         with_type=not dest.change_data_capture, change_type="INSERT",
                         on_progress=lambda _: context.check_cancelled())
        for record, reason in batch.failures:
            context.add(failure=1, pending=-1)
            context.log("ERROR", reason, resource=_instance_path(store_name, record))
        context.check_cancelled()
        try:
            # One transaction: the table state check, schema changes and every row, or nothing.
            _write(data_dir, dest.table, batch, replace=replace, check=check,
                   keys=uid_keys if dest.change_data_capture else ())
        finally:
            context.add(pending=-len(batch.lines))  # written or not, nothing is pending any more
        context.add(success=len(batch.lines))
        if batch.failures:
            raise InvalidArgument(
                f"{len(batch.failures)} of {len(records)} instances failed to export; each instance's reason is"
                " in the operation log at metadata.logsUrl"
            )

    return run


def append_instances(data_dir: Path, table_uri: str, store_name: str, records: list[InstanceRecord],
                     include_source_store: bool, *, json_schema: bool = False, change_type: str = "INSERT") -> None:
    """Streaming (streamConfigs): append one row per instance, creating the table or extending its schema.

    Rows above BigQuery's 1 MB streaming limit are skipped, as are instances whose metadata cannot be
    converted; both are logged (the real service logs them to Cloud Logging). Table-level problems
    raise ApiError: InvalidArgument (bad tableUri), FailedPrecondition (column type conflict),
    Unavailable (database locked by another process for too long).
    """
    ref = parse_table_uri(table_uri, "streamConfigs.bigqueryDestination.tableUri")
    batch = _convert(records, store_name, include_source_store, json_schema, with_type=True,
                     change_type=change_type, row_limit=STREAMING_ROW_LIMIT)
    for record, reason in batch.failures:
        logger.warning("streaming to %s skipped %s: %s", ref.uri, _instance_path(store_name, record), reason)
    for record in batch.oversized:
        logger.warning("streaming to %s skipped %s: the row is larger than BigQuery's 1 MB streaming limit",
                       ref.uri, _instance_path(store_name, record))
    if batch.lines:
        _write(data_dir, ref, batch, replace=False, check=None)
