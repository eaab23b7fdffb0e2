"""BigQuery SQL against the local warehouse or BigQuery: the one place that chooses, for `query` and `filter build`."""

from __future__ import annotations

import argparse
import decimal
import os
from pathlib import Path
from typing import Any

from dicom_pipeline.errors import http_status

from .common import LOCAL_EXTRA_FIX, OK, UsageError, endpoint, print_json, print_table

Rows = tuple[list[str], list[tuple[Any, ...]]]


def add_warehouse_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=os.environ.get("HEALTHCARE_EMULATOR_DATA_DIR"),
                        help="the emulator's data directory: query its local warehouse instead of BigQuery"
                        " (default: $HEALTHCARE_EMULATOR_DATA_DIR; `local-stack up` prints it as warehouse-dir)")
    parser.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT"),
                        help="BigQuery: the project the query job runs in (default: $GOOGLE_CLOUD_PROJECT, else the"
                        " default credentials' project)")


def run_sql(args: argparse.Namespace, sql: str) -> Rows:
    """The local warehouse when --data-dir is given, else BigQuery with default credentials."""
    if args.data_dir:
        return _local(args.data_dir, sql)
    if endpoint(args):  # the local stack's BigQuery is the emulator's warehouse, not the cloud
        raise UsageError("the local stack's tables are in the local warehouse: pass --data-dir (the emulator's data"
                         " directory, warehouse-dir in `dicom-pipeline local-stack up`) or set"
                         " HEALTHCARE_EMULATOR_DATA_DIR; without --endpoint/HEALTHCARE_API_ENDPOINT the query goes"
                         " to BigQuery")
    return _bigquery(args.project, sql)


def _local(data_dir: str, sql: str) -> Rows:
    if not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a directory; pass the emulator's data directory")
    try:
        from local_bigquery.query import QueryError, run_query
    except ModuleNotFoundError as exc:  # an install without the local extras (duckdb, sqlglot, the emulator)
        raise UsageError(f"the local warehouse needs {exc.name}: {LOCAL_EXTRA_FIX}") from exc

    try:
        return run_query(data_dir, sql)
    except QueryError as exc:
        raise UsageError(f"the query failed: {exc}; check the SQL and the table name") from exc


def _bigquery(project: str | None, sql: str) -> Rows:
    try:
        from google.cloud import bigquery  # lazy: only cloud queries need it
    except ImportError as exc:
        raise UsageError("querying BigQuery needs google-cloud-bigquery (pip install google-cloud-bigquery);"
                         " or pass --data-dir for the local warehouse") from exc
    from google.auth.exceptions import DefaultCredentialsError

    try:
        client = bigquery.Client(project=project)
    except DefaultCredentialsError as exc:
        raise UsageError(f"no Google Cloud credentials for BigQuery ({exc}); run `gcloud auth application-default"
                         " login`, or pass --data-dir to query the local warehouse") from exc
    except OSError as exc:  # google-cloud-core: "Project was not passed and could not be determined"
        raise UsageError(f"{exc}; pass --project or set GOOGLE_CLOUD_PROJECT") from exc
    try:
        result = client.query(sql).result()
    except Exception as exc:
        if http_status(exc) in (400, 404):  # bad SQL or a missing table: the operator fixes the query
            raise UsageError(f"the query failed: {getattr(exc, 'message', exc)}") from exc
        raise
    columns = [field.name for field in result.schema]
    return columns, [tuple(row.values()) for row in result]


def as_bigquery_json(value: Any) -> Any:
    """A value as BigQuery's JSON output writes it: INT64 and NUMERIC as strings (the seed shows
    `"InstanceCount": "4"`), since JSON numbers cannot carry 64-bit integers exactly; records and arrays
    converted inside."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: as_bigquery_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_bigquery_json(item) for item in value]
    return value


def cmd_query(args: argparse.Namespace) -> int:
    columns, rows = run_sql(args, args.sql)
    if args.format == "json":
        print_json([{column: as_bigquery_json(value) for column, value in zip(columns, row, strict=True)}
                    for row in rows])
    else:
        print_table(columns, rows)
    return OK
