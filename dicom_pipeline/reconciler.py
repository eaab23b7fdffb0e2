"""Give every stored instance exactly one row: export the instances that have none, and only those.

A notification can be lost (topic deleted, publisher grant removed, a publish failure the Healthcare API only
logs), and an export whose answer was lost leaves its claims "unknown" (exporter.py). One pass:

1. list the dataset's operations: is any export still running? (`operations.list`)
2. export the whole store to a scratch table next to the table (WRITE_TRUNCATE: repeating it is harmless);
3. anti-join the scratch table against the table: the instances without a row;
4. for each, its claim (exporter.instance_claim) decides: no claim → claim it and export it; a claim whose
   export is pending or done → leave it (its row is on the way); a claim whose export has an unknown
   outcome, was started by an invocation that died, or whose operation failed with no one left to release
   it → take it over, but only when no export was running at step 1 and the claim is well older than that:
   that operation, if there was one, is done, and the instance still has no row, so it did not append it.
   Exporting it now is exact either way.

Claims make it safe to run while the pipeline runs: a notification arriving after the reconciler claimed its
instance follows the reconciler's export, and the other way round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import cloud_storage, exporter, healthcare, logs
from .config import Settings
from .errors import PipelineError, TableMissing, TransientError
from .names import BigQueryTableUri, DicomStoreName

# Rows of a query: the caller runs SQL on BigQuery (or the local warehouse) and raises TableMissing for a
# table that does not exist.
Query = Callable[[str], Sequence[Sequence[Any]]]
SCRATCH_SUFFIX = "__reconcile"


@dataclass
class Report:
    stored: int = 0  # instances in the store (the scratch export)
    missing: int = 0  # of which have no row
    exported: list[str] = field(default_factory=list)  # filter lines exported in this pass
    taken_over: int = 0  # of those, instances whose earlier export had an unknown outcome
    in_flight: int = 0  # missing, but their export is pending or just finished
    deferred: int = 0  # unknown outcome, not yet decidable (an export is running, or it is too recent)
    failed: int = 0  # their export failed permanently (dead-lettered)
    operations: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would export" if self.dry_run else "exported"
        return (f"reconcile: {self.stored} stored, {self.missing} without a row: {verb} {len(self.exported)}"
                f" ({self.taken_over} after an unknown outcome), {self.in_flight} in flight, {self.deferred}"
                f" deferred, {self.failed} failed")


def scratch_table(table: BigQueryTableUri) -> BigQueryTableUri:
    return BigQueryTableUri(table.project, table.dataset, table.table + SCRATCH_SUFFIX)


def _sql_name(table: BigQueryTableUri) -> str:
    return f"`{table.project}.{table.dataset}.{table.table}`"


_KEYS = "StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID"


def missing_instances(query: Query, table: BigQueryTableUri) -> tuple[int, list[str]]:
    """(instances in the scratch table, filter lines of those without a row in `table`)."""
    scratch = _sql_name(scratch_table(table))
    stored = int(query(f"SELECT COUNT(*) FROM {scratch}")[0][0])  # noqa: S608 - names we built
    if stored == 0:  # an empty store exports a table without the UID columns
        return 0, []
    try:
        rows = query(f"SELECT DISTINCT {_KEYS} FROM {scratch} AS s WHERE NOT EXISTS (SELECT 1 FROM"  # noqa: S608
                     f" {_sql_name(table)} AS t WHERE t.SOPInstanceUID = s.SOPInstanceUID AND"
                     " t.SeriesInstanceUID = s.SeriesInstanceUID AND t.StudyInstanceUID = s.StudyInstanceUID)")
    except TableMissing:
        rows = query(f"SELECT DISTINCT {_KEYS} FROM {scratch}")  # noqa: S608
    return stored, sorted(f"/studies/{st}/series/{se}/instances/{sop}" for st, se, sop in rows)


def reconcile(settings: Settings, query: Query, dry_run: bool = False) -> Report:
    """One pass (module docstring)."""
    table = settings.bigquery_table
    if table is None:
        from .errors import ConfigError

        raise ConfigError("BIGQUERY_TABLE is not set: the reconciler needs the table to compare against")
    store, endpoint = settings.dicom_store, settings.healthcare_api_endpoint
    checked_at = time.time()
    running = [op.get("name") for op in healthcare.list_operations(endpoint, store.dataset_name)
               if not op.get("done") and "Export" in str(op.get("metadata", {}).get("apiMethodName", ""))]
    scratch = healthcare.export_to_bigquery(endpoint, store, scratch_table(table), "WRITE_TRUNCATE", None)
    done = healthcare.wait(endpoint, scratch, settings.operation_wait_seconds)
    if not done.get("done") or "error" in done:
        raise TransientError(f"reconcile: the scratch export {done.get('name')} did not succeed: "
                             f"{done.get('error', 'still running')}")
    report = Report(dry_run=dry_run)
    report.stored, missing = missing_instances(query, table)
    report.missing = len(missing)
    takeovers: dict[str, int] = {}
    fresh: list[str] = []
    for line in missing:
        verdict, generation = _verdict(settings, line, decidable=not running,
                                       before=checked_at - settings.reconcile_unknown_after)
        if verdict == "claim":
            fresh.append(line)
        elif verdict == "take over":
            takeovers[line] = int(generation or 0)
        else:
            setattr(report, verdict, getattr(report, verdict) + 1)
    report.taken_over = len(takeovers)
    if dry_run:
        report.exported = fresh + list(takeovers)
    else:
        _export(settings, store, table, fresh, takeovers, report)
    logs.log(logging.INFO, report.summary(), store=str(store), table=str(table), outcome="reconciled")
    return report


def scheduled_pass(settings: Settings) -> str:
    """The pass the Cloud Scheduler job asks for ({"reconcile": true} on the export trigger's topic), querying
    BigQuery in the table's project."""
    from . import bigquery

    project = (settings.bigquery_table or settings.dicom_store).project
    report = reconcile(settings, lambda sql: bigquery.query_rows(project, sql))
    return "reconciled (some deferred)" if report.deferred else "reconciled"


def _verdict(settings: Settings, line: str, decidable: bool, before: float) -> tuple[str, int | None]:
    """What to do with an instance without a row: claim, take over, or a Report counter to add it to."""
    found = cloud_storage.read_json(settings, settings.staging_bucket, exporter.instance_claim(line))
    if found is None:
        return "claim", None
    claim, generation = found
    batch = cloud_storage.read_json(settings, settings.staging_bucket, claim["batch"]) if claim.get("batch") else None
    if batch is None:  # claimed, intent not recorded: the holder is before its call, or died before it
        stale = time.time() - float(claim.get("started", 0)) >= settings.stale_claim_seconds
        return ("take over", generation) if stale else ("in_flight", None)
    record = batch[0]
    status = record.get("status")
    if status == "failed":
        return "failed", None
    if status == "pending" and decidable and float(record.get("started", 0)) <= before and \
            healthcare.get_operation(settings.healthcare_api_endpoint, record["operation"]).get("done"):
        # Its operation was done before step 1 (created earlier, nothing running then) and the instance has
        # no row: it failed, and its holder died before releasing the claim.
        return "take over", generation
    if status in ("pending", "succeeded"):
        return "in_flight", None
    if status == "starting":  # the holder may still be about to call, until no function can still run
        unknown_since = float(record.get("started", 0)) + settings.stale_claim_seconds
    else:  # "unknown"
        unknown_since = float(record.get("failed", record.get("started", 0)))
    if decidable and unknown_since <= before:
        return "take over", generation
    return "deferred", None


def _export(settings: Settings, store: DicomStoreName, table: BigQueryTableUri, fresh: list[str],
            takeovers: dict[str, int], report: Report) -> None:
    for line, generation in takeovers.items():  # then claimed again below, like a fresh one
        cloud_storage.delete(settings, settings.staging_bucket, exporter.instance_claim(line),
                       if_generation_match=generation)
    lines = fresh + list(takeovers)
    step = settings.export_batch_max
    for start in range(0, len(lines), step):
        items = [exporter.claim_item(line, exporter.RECONCILER) for line in lines[start:start + step]]
        try:
            exported, operation = exporter.export_claimed(settings, store, table, items)
        except PipelineError as exc:  # unknown or failed: the next pass sees it through the claims
            logs.log(logging.WARNING, f"reconcile: an export of {len(items)} instances failed: {exc}",
                     outcome="failed", batch=len(items))
            continue
        report.exported += exported
        if operation:
            report.operations.append(operation)
