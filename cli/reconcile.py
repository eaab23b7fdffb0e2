"""`dicom-pipeline reconcile`: export the stored instances that have no row in the table, and only those."""

from __future__ import annotations

import argparse
import os

from dicom_pipeline import reconciler
from dicom_pipeline.config import Settings
from dicom_pipeline.errors import TableMissing
from dicom_pipeline.names import BigQueryTableUri, DicomStoreName

from .common import OK, UsageError, endpoint, print_json
from .query import run_sql


def _required(value: str | None, flag: str, env: str) -> str:
    if not value:
        raise UsageError(f"give {flag} or set {env}")
    return value


def settings_from(args: argparse.Namespace) -> Settings:
    """The functions' settings, from the flags or the same environment variables the functions read."""
    store = DicomStoreName.from_string(_required(args.store, "STORE", "DICOM_STORE"))
    table = BigQueryTableUri.from_string(_required(args.table, "TABLE", "BIGQUERY_TABLE"))
    staging = _required(args.staging_bucket, "--staging-bucket", "STAGING_BUCKET").removeprefix("gs://").rstrip("/")
    return Settings(dicom_store=store, staging_bucket=staging, bigquery_table=table,
                    healthcare_api_endpoint=endpoint(args),
                    storage_emulator_host=os.environ.get("STORAGE_EMULATOR_HOST") or None,
                    project=args.project or store.project, reconcile_unknown_after=args.unknown_after,
                    stale_claim_seconds=args.stale_claim_seconds, operation_wait_seconds=args.timeout)


def warehouse_query(args: argparse.Namespace) -> reconciler.Query:
    """run_sql (local warehouse or BigQuery) with a missing table told apart from other failures."""
    def query(sql: str) -> list[tuple[object, ...]]:
        try:
            return run_sql(args, sql)[1]
        except UsageError as exc:
            if any(words in str(exc).lower() for words in ("does not exist", "not found")):
                raise TableMissing(str(exc)) from exc
            raise

    return query


def cmd_reconcile(args: argparse.Namespace) -> int:
    report = reconciler.reconcile(settings_from(args), warehouse_query(args), dry_run=args.dry_run)
    if args.format == "json":
        print_json({"stored": report.stored, "missing": report.missing, "exported": len(report.exported),
                    "takenOver": report.taken_over, "inFlight": report.in_flight, "deferred": report.deferred,
                    "failed": report.failed, "operations": report.operations, "dryRun": report.dry_run,
                    **({"instances": report.exported} if report.dry_run else {})})
    else:
        print(report.summary())
        if report.dry_run:
            for line in report.exported:
                print(f"  {line}")
    return OK
