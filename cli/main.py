"""Operator CLI over the Cloud Healthcare API (default credentials) or the local stack (`--endpoint`).

Exit codes: 0 ok, 1 the operation failed, 2 usage error (bad arguments, names or configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dicom_pipeline import healthcare, storage
from dicom_pipeline.errors import PipelineError, classify
from dicom_pipeline.names import BigQueryTableUri, DicomStoreName, GcsUri, filter_line

OK, FAILED, USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem the operator fixes by changing the command or its configuration."""


def _endpoint(args: argparse.Namespace) -> str | None:
    return args.endpoint or os.environ.get("HEALTHCARE_API_ENDPOINT") or None


def _counters(operation: dict[str, Any]) -> dict[str, int]:
    counter = operation.get("metadata", {}).get("counter", {})
    return {key: int(counter.get(key, 0)) for key in ("success", "failure", "pending")}


def _progress(operation: dict[str, Any], out: Any) -> None:
    if not out.isatty():
        return
    c = _counters(operation)
    out.write(f"\r{operation['name'].rsplit('/', 1)[-1]}: {c['success']} ok, {c['failure']} failed,"
              f" {c['pending']} pending ")
    out.flush()


def _wait(endpoint: str | None, operation: dict[str, Any], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not operation.get("done"):
        if time.monotonic() >= deadline:
            raise UsageError(f"operation {operation['name']} still running after {timeout:g} s;"
                             f" run `dicom-pipeline operations wait {operation['name']}` or raise --timeout")
        _progress(operation, sys.stderr)
        operation = healthcare.wait(endpoint, operation, min(1.0, max(0.0, deadline - time.monotonic())))
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    return operation


def _log_entries(operation: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-file reasons from metadata.logsUrl when it is an http(s) URL answering {"entries": [...]}."""
    url = operation.get("metadata", {}).get("logsUrl", "")
    if not url.startswith(("http://", "https://")):
        return []
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - scheme checked above
            body = json.load(response)
    except (OSError, ValueError):
        return []
    entries = body.get("entries") if isinstance(body, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _summary(operation: dict[str, Any]) -> dict[str, Any]:
    c = _counters(operation)
    summary: dict[str, Any] = {"name": operation["name"], "done": bool(operation.get("done")),
                               "success": c["success"], "failure": c["failure"]}
    if "error" in operation:
        summary["error"] = operation["error"]
    return summary


def _report(args: argparse.Namespace, operation: dict[str, Any]) -> int:
    summary = _summary(operation)
    failed = "error" in operation or summary["failure"] > 0
    if failed:
        summary["logs"] = _log_entries(operation)
    if args.format == "json":
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"{summary['name']}: {summary['success']} succeeded, {summary['failure']} failed")
        if "error" in summary:
            print(f"error: {summary['error'].get('message', summary['error'])}")
        for entry in summary.get("logs", []):
            print(f"  {entry.get('resource') or entry.get('file') or ''}: "
                  f"{entry.get('message') or json.dumps(entry, sort_keys=True)}")
    return FAILED if failed else OK


def cmd_import(args: argparse.Namespace) -> int:
    try:
        store = DicomStoreName.from_string(args.store)
        source = GcsUri.from_string(args.source)
    except ValueError as exc:
        raise UsageError(f"{exc}; e.g. dicom-pipeline import projects/P/locations/L/datasets/D/dicomStores/S"
                         " 'gs://bucket/dir/**.dcm'") from exc
    endpoint = _endpoint(args)
    operation = healthcare.import_dicom(endpoint, store, source, args.storage_class)
    if args.async_:
        print(json.dumps({"name": operation["name"]}) if args.format == "json" else operation["name"])
        return OK
    return _report(args, _wait(endpoint, operation, args.timeout))


def cmd_export_bq(args: argparse.Namespace) -> int:
    try:
        store = DicomStoreName.from_string(args.store)
        table = BigQueryTableUri.from_string(args.table)
        filter_uri = GcsUri.from_string(args.filter_config_gcs_uri) if args.filter_config_gcs_uri else None
    except ValueError as exc:
        raise UsageError(f"{exc}; e.g. dicom-pipeline export bq STORE bq://project.dataset.table"
                         " [--filter-config-gcs-uri gs://bucket/filter.txt]") from exc
    if args.write_disposition and args.overwrite_table:
        raise UsageError("--overwrite-table is the legacy form of --write-disposition WRITE_TRUNCATE; give one")
    destination: dict[str, Any] = {"tableUri": str(table)}
    if args.write_disposition:
        destination["writeDisposition"] = args.write_disposition
    elif args.overwrite_table:
        destination["force"] = True
    body: dict[str, Any] = {"bigqueryDestination": destination}
    if filter_uri is not None:
        body["filterConfig"] = {"resourcePathsGcsUri": str(filter_uri)}
    return _run_export(args, store, body)


def cmd_export_gcs(args: argparse.Namespace) -> int:
    try:
        store = DicomStoreName.from_string(args.store)
        if not args.prefix.startswith("gs://"):
            raise ValueError("expected gs://BUCKET/PREFIX")
        filter_uri = GcsUri.from_string(args.filter_config_gcs_uri) if args.filter_config_gcs_uri else None
    except ValueError as exc:
        raise UsageError(f"{exc}; e.g. dicom-pipeline export gcs STORE gs://bucket/exports"
                         " [--mime-type 'application/dicom; transfer-syntax=*']") from exc
    destination: dict[str, Any] = {"uriPrefix": args.prefix}
    if args.mime_type:
        destination["mimeType"] = args.mime_type
    body: dict[str, Any] = {"gcsDestination": destination}
    if filter_uri is not None:
        body["filterConfig"] = {"resourcePathsGcsUri": str(filter_uri)}
    return _run_export(args, store, body)


def _run_export(args: argparse.Namespace, store: DicomStoreName, body: dict[str, Any]) -> int:
    endpoint = _endpoint(args)
    stores = healthcare.service(endpoint).projects().locations().datasets().dicomStores()
    try:
        operation = stores.export(name=str(store), body=body).execute(num_retries=0)
    except Exception as exc:
        raise classify(exc, "dicomStores.export") from exc
    if args.async_:
        print(json.dumps({"name": operation["name"]}) if args.format == "json" else operation["name"])
        return OK
    return _report(args, _wait(endpoint, operation, args.timeout))


_UID_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def _storage_settings() -> SimpleNamespace:
    return SimpleNamespace(storage_emulator_host=os.environ.get("STORAGE_EMULATOR_HOST") or None,
                           project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)


def cmd_filter_build(args: argparse.Namespace) -> int:
    if not args.data_dir:
        raise UsageError("filter build needs the local warehouse: pass --data-dir (the emulator's data directory)"
                         " or set HEALTHCARE_EMULATOR_DATA_DIR; BigQuery in the cloud is not supported yet")
    from local_stack.warehouse_query import run_query

    try:
        columns, rows = run_query(args.data_dir, args.sql)
    except Exception as exc:
        raise UsageError(f"the query failed: {exc}; check the SQL and the table name") from exc
    if "StudyInstanceUID" not in columns:
        raise UsageError("the query must select StudyInstanceUID (and optionally SeriesInstanceUID,"
                         " SOPInstanceUID); e.g. SELECT StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID FROM ...")
    depth = 1
    while depth < 3 and _UID_COLUMNS[depth] in columns:
        depth += 1
    indexes = [columns.index(name) for name in _UID_COLUMNS[:depth]]
    lines: list[str] = []
    for row in rows:
        values = [row[i] for i in indexes]
        if any(v is None or v == "" for v in values):
            continue
        parts = zip(("studies", "series", "instances"), values, strict=False)
        line = "/" + "/".join(f"{key}/{value}" for key, value in parts)
        if line not in lines:
            lines.append(line)
    text = "".join(f"{line}\n" for line in lines)
    if args.output.startswith("gs://"):
        target = GcsUri.from_string(args.output)
        storage.write_text(_storage_settings(), target.bucket, target.name, text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    if args.format == "json":
        print(json.dumps({"output": args.output, "lines": len(lines)}, indent=2, sort_keys=True))
    else:
        print(f"wrote {len(lines)} lines to {args.output}")
    return OK


def cmd_filter_validate(args: argparse.Namespace) -> int:
    if args.file.startswith("gs://"):
        source = GcsUri.from_string(args.file)
        try:
            blob = storage.client(_storage_settings().storage_emulator_host, _storage_settings().project) \
                .bucket(source.bucket).blob(source.name)
            text = blob.download_as_bytes().decode("utf-8")
        except Exception as exc:
            raise UsageError(f"cannot read {args.file}: {exc}; check the name and your Storage Object Viewer"
                             " role") from exc
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {args.file}: {exc}") from exc
    bad: list[dict[str, Any]] = []
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        count += 1
        try:
            filter_line(line)
        except ValueError as exc:
            bad.append({"line": number, "text": line, "reason": str(exc)})
    if args.format == "json":
        print(json.dumps({"file": args.file, "lines": count, "bad": bad}, indent=2, sort_keys=True))
    else:
        for entry in bad:
            print(f"{args.file}:{entry['line']}: {entry['reason']}")
        print(f"{count} lines, {len(bad)} bad")
    return FAILED if bad else OK


def cmd_operations_describe(args: argparse.Namespace) -> int:
    operation = healthcare.get_operation(_endpoint(args), args.name)
    if args.format == "json":
        print(json.dumps(operation, indent=2, sort_keys=True))
        return OK
    return _report(args, operation) if operation.get("done") else _print_running(operation)


def _print_running(operation: dict[str, Any]) -> int:
    c = _counters(operation)
    print(f"{operation['name']}: running, {c['success']} succeeded, {c['failure']} failed, {c['pending']} pending")
    return OK


def cmd_operations_wait(args: argparse.Namespace) -> int:
    endpoint = _endpoint(args)
    operation = healthcare.get_operation(endpoint, args.name)
    return _report(args, _wait(endpoint, operation, args.timeout))


def cmd_operations_list(args: argparse.Namespace) -> int:
    operations_api = healthcare.service(_endpoint(args)).projects().locations().datasets().operations()
    found: list[dict[str, Any]] = []
    token = None
    while True:
        try:
            page = operations_api.list(name=args.dataset, pageToken=token).execute(num_retries=0)
        except Exception as exc:
            raise classify(exc, "operations.list") from exc
        found.extend(page.get("operations", []))
        token = page.get("nextPageToken")
        if not token:
            break
    if args.format == "json":
        print(json.dumps([_summary(op) for op in found], indent=2, sort_keys=True))
        return OK
    for op in found:
        summary = _summary(op)
        state = ("failed" if "error" in op else "done") if summary["done"] else "running"
        method = op.get("metadata", {}).get("apiMethodName", "").rsplit(".", 1)[-1]
        print(f"{op['name']}  {method}  {state}  {summary['success']} ok  {summary['failure']} failed")
    return OK


EXAMPLES_IMPORT = """examples:
  dicom-pipeline import projects/p/locations/us/datasets/d/dicomStores/s 'gs://bucket/incoming/**.dcm'
  dicom-pipeline import STORE 'gs://bucket/a/*.dcm' --storage-class NEARLINE --async
  dicom-pipeline --endpoint http://localhost:8080 import STORE gs://bucket/x.dcm --format json
"""

EXAMPLES_EXPORT = """examples:
  dicom-pipeline export bq projects/p/locations/us/datasets/d/dicomStores/s bq://proj.dicom.instances
  dicom-pipeline export bq STORE bq://proj.dicom.instances --write-disposition WRITE_TRUNCATE
  dicom-pipeline export bq STORE bq://proj.dicom.ct --filter-config-gcs-uri gs://bucket/ct-filter.txt
  dicom-pipeline export gcs STORE gs://bucket/exports --mime-type 'application/dicom; transfer-syntax=*'
"""

EXAMPLES_FILTER = """examples:
  dicom-pipeline filter build --data-dir .local-stack/emulator \\
      --sql "SELECT StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID FROM \\`p.dicom.instances\\`
             WHERE Modality = 'CT'" --output gs://bucket/ct-filter.txt
  dicom-pipeline filter validate gs://bucket/ct-filter.txt
  dicom-pipeline filter validate ./filter.txt --format json
"""

EXAMPLES_OPS = """examples:
  dicom-pipeline operations describe projects/p/locations/us/datasets/d/operations/123 --format json
  dicom-pipeline operations wait projects/p/locations/us/datasets/d/operations/123 --timeout 600
  dicom-pipeline operations list projects/p/locations/us/datasets/d --format json
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", default=argparse.SUPPRESS,
                        help="Healthcare API endpoint of the local stack (default: $HEALTHCARE_API_ENDPOINT,"
                        " else Google Cloud with default credentials)")
    common.add_argument("--format", choices=("text", "json"), default=argparse.SUPPRESS,
                        help="output format (default text)")
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="dicom-pipeline", formatter_class=raw, parents=[common],
        description="Operate the DICOM pipeline against Google Cloud or the local stack.",
        epilog=EXAMPLES_IMPORT + EXAMPLES_OPS)
    sub = parser.add_subparsers(dest="command", required=True)

    # What every command that starts an operation on a store takes (the store comes first).
    long_running = argparse.ArgumentParser(add_help=False)
    long_running.add_argument("store", help="projects/P/locations/L/datasets/D/dicomStores/S")
    long_running.add_argument("--async", dest="async_", action="store_true", help="print the operation name and exit")
    long_running.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")

    p = sub.add_parser("import", parents=[common, long_running], formatter_class=raw, epilog=EXAMPLES_IMPORT,
                       help="import DICOM files from Cloud Storage into a store and wait")
    p.add_argument("source", help="gs://BUCKET/PATH, wildcards * and ** allowed")
    p.add_argument("--storage-class", choices=("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"))
    p.set_defaults(func=cmd_import)

    ex = sub.add_parser("export", formatter_class=raw, epilog=EXAMPLES_EXPORT, help="export a store's instances")
    ex_sub = ex.add_subparsers(dest="export_command", required=True)
    b = ex_sub.add_parser("bq", parents=[common, long_running], formatter_class=raw, epilog=EXAMPLES_EXPORT,
                          help="export instance metadata to a BigQuery table and wait")
    b.add_argument("table", help="bq://PROJECT.DATASET.TABLE")
    b.add_argument("--write-disposition", choices=("WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND"))
    b.add_argument("--overwrite-table", action="store_true", help="legacy `force`: overwrite an existing table")
    b.add_argument("--filter-config-gcs-uri", help="gs:// filter file of /studies/... lines")
    b.set_defaults(func=cmd_export_bq)
    g = ex_sub.add_parser("gcs", parents=[common, long_running], formatter_class=raw, epilog=EXAMPLES_EXPORT,
                          help="export instances to Cloud Storage objects under a prefix and wait")
    g.add_argument("prefix", help="gs://BUCKET/PREFIX (objects: PREFIX/STUDY/SERIES/INSTANCE.dcm)")
    g.add_argument("--mime-type", help="e.g. 'application/dicom; transfer-syntax=*' (as stored), image/jpeg")
    g.add_argument("--filter-config-gcs-uri", help="gs:// filter file of /studies/... lines")
    g.set_defaults(func=cmd_export_gcs)

    fl = sub.add_parser("filter", formatter_class=raw, epilog=EXAMPLES_FILTER, help="filter files (/studies/... lines)")
    fl_sub = fl.add_subparsers(dest="filter_command", required=True)
    fb = fl_sub.add_parser("build", parents=[common], formatter_class=raw, epilog=EXAMPLES_FILTER,
                           help="query the exported metadata and write a filter file")
    fb.add_argument("--sql", required=True, help="BigQuery SQL selecting StudyInstanceUID[, SeriesInstanceUID"
                    "[, SOPInstanceUID]]")
    fb.add_argument("--output", required=True, help="gs://BUCKET/OBJECT or a local path")
    fb.add_argument("--data-dir", default=os.environ.get("HEALTHCARE_EMULATOR_DATA_DIR"),
                    help="the emulator's data directory holding the local warehouse"
                    " (default: $HEALTHCARE_EMULATOR_DATA_DIR)")
    fb.set_defaults(func=cmd_filter_build)
    fv = fl_sub.add_parser("validate", parents=[common], formatter_class=raw, epilog=EXAMPLES_FILTER,
                           help="check every line of a filter file; prints the numbers of bad lines")
    fv.add_argument("file", help="gs://BUCKET/OBJECT or a local path")
    fv.set_defaults(func=cmd_filter_validate)

    ops = sub.add_parser("operations", formatter_class=raw, epilog=EXAMPLES_OPS, help="long-running operations")
    ops_sub = ops.add_subparsers(dest="operations_command", required=True)
    d = ops_sub.add_parser("describe", parents=[common], formatter_class=raw, epilog=EXAMPLES_OPS,
                           help="show an operation's state, counters and errors")
    d.add_argument("name", help="projects/P/locations/L/datasets/D/operations/ID")
    d.set_defaults(func=cmd_operations_describe)
    w = ops_sub.add_parser("wait", parents=[common], formatter_class=raw, epilog=EXAMPLES_OPS,
                           help="wait for an operation, then print its counts")
    w.add_argument("name", help="projects/P/locations/L/datasets/D/operations/ID")
    w.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    w.set_defaults(func=cmd_operations_wait)
    li = ops_sub.add_parser("list", parents=[common], formatter_class=raw, epilog=EXAMPLES_OPS,
                            help="list a dataset's operations with their state and counters")
    li.add_argument("dataset", help="projects/P/locations/L/datasets/D")
    li.set_defaults(func=cmd_operations_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    args.endpoint = getattr(args, "endpoint", None)
    args.format = getattr(args, "format", "text")
    try:
        return int(args.func(args))
    except (UsageError, ValueError) as exc:
        print(f"dicom-pipeline: error: {exc}", file=sys.stderr)
        return USAGE
    except PipelineError as exc:
        print(f"dicom-pipeline: error: {exc} (check the name, the endpoint and that your account has the"
              " Healthcare DICOM Editor role)", file=sys.stderr)
        return FAILED
    except Exception as exc:
        from google.auth.exceptions import DefaultCredentialsError

        if not isinstance(exc, DefaultCredentialsError):
            raise
        print(f"dicom-pipeline: error: no Google Cloud credentials ({exc}); run `gcloud auth application-default"
              " login`, or pass --endpoint / set HEALTHCARE_API_ENDPOINT for the local stack", file=sys.stderr)
        return USAGE
