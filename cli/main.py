"""Operator CLI over the Cloud Healthcare API (default credentials) or the local stack (`--endpoint`).

Exit codes: 0 ok, 1 the operation failed, 2 usage error (bad arguments, names, configuration or a missing IAM
role). Errors are one line naming the problem and the fix, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dicom_pipeline.dead_letters import DeadLetterError
from dicom_pipeline.errors import PipelineError, http_status

from . import console, dead_letters, filters, operations, query, reconcile, stack, store_ops
from .common import FAILED, USAGE, UsageError
from .permissions import is_permission_denied, permission_message

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
  dicom-pipeline filter build --data-dir .local-stack/data/healthcare \\
      --sql "SELECT StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID FROM \\`p.dicom.instances\\`
             WHERE Modality = 'CT'" --output gs://bucket/ct-filter.txt
  dicom-pipeline filter build --project my-project --output ./ct.txt \\
      --sql "SELECT StudyInstanceUID FROM \\`my-project.dicom.instances\\` WHERE Modality = 'CT'"
  dicom-pipeline filter validate gs://bucket/ct-filter.txt
  dicom-pipeline filter validate ./filter.txt --format json
"""

EXAMPLES_OPS = """examples:
  dicom-pipeline operations describe projects/p/locations/us/datasets/d/operations/123 --format json
  dicom-pipeline operations wait projects/p/locations/us/datasets/d/operations/123 --timeout 600
  dicom-pipeline operations list projects/p/locations/us/datasets/d --format json
"""

EXAMPLES_QUERY = """examples:
  dicom-pipeline query --data-dir .local-stack/data/healthcare \\
      "SELECT Modality, COUNT(*) AS instances FROM \\`local-project.dicom_metadata.instances\\` GROUP BY Modality"
  dicom-pipeline query --project my-project --format json \\
      "SELECT StudyInstanceUID, PatientID FROM \\`my-project.dicom.instances\\` LIMIT 10"
"""

EXAMPLES_STORAGE_CLASS = """examples:
  dicom-pipeline storage-class projects/p/locations/us/datasets/d/dicomStores/s ARCHIVE \\
      --filter-config-gcs-uri gs://bucket/old-studies.txt
  dicom-pipeline filter build --data-dir DIR --output gs://bucket/mr.txt \\
      --sql "SELECT StudyInstanceUID FROM \\`p.d.t\\` WHERE Modality = 'MR'" &&
    dicom-pipeline storage-class STORE COLDLINE --filter-config-gcs-uri gs://bucket/mr.txt --format json
  dicom-pipeline storage-class STORE NEARLINE --whole-store --async
"""

EXAMPLES_RECONCILE = """examples:
  dicom-pipeline reconcile --dry-run     # STORE, TABLE and the staging bucket from DICOM_STORE, BIGQUERY_TABLE,
                                         # STAGING_BUCKET (as the functions read them)
  dicom-pipeline reconcile projects/p/locations/us/datasets/d/dicomStores/s bq://p.dicom.instances \\
      --staging-bucket p-dicom-staging --project p
  dicom-pipeline reconcile --data-dir .local-stack/data/healthcare --format json   # the local stack
"""

EXAMPLES_STACK = """examples:
  dicom-pipeline local-stack up          # start in the background; prints endpoints and export lines
  dicom-pipeline local-stack status      # exit 0 when every component answers, 1 otherwise
  dicom-pipeline local-stack down
  dicom-pipeline local-stack up --run-dir .stacks/demo   # state and logs there instead of .local-stack
"""

EXAMPLES_DEAD_LETTERS = """examples:
  dicom-pipeline dead-letters list --staging-bucket my-staging --since 24h
  dicom-pipeline dead-letters requeue --all --kind import --reason-contains "already exists"
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
        epilog=EXAMPLES_IMPORT + EXAMPLES_OPS + EXAMPLES_QUERY + EXAMPLES_STACK + EXAMPLES_DEAD_LETTERS)
    sub = parser.add_subparsers(dest="command", required=True)

    # What every command that starts an operation on a store takes (the store comes first).
    long_running = argparse.ArgumentParser(add_help=False)
    long_running.add_argument("store", help="projects/P/locations/L/datasets/D/dicomStores/S")
    long_running.add_argument("--async", dest="async_", action="store_true", help="print the operation name and exit")
    long_running.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")

    p = sub.add_parser("import", parents=[common, long_running], formatter_class=raw, epilog=EXAMPLES_IMPORT,
                       help="import DICOM files from Cloud Storage into a store and wait")
    p.add_argument("source", help="gs://BUCKET/PATH, wildcards * and ** allowed")
    p.add_argument("--storage-class", choices=store_ops.STORAGE_CLASSES)
    p.set_defaults(func=store_ops.cmd_import, iam="import")

    ex = sub.add_parser("export", formatter_class=raw, epilog=EXAMPLES_EXPORT, help="export a store's instances")
    ex_sub = ex.add_subparsers(dest="export_command", required=True)
    b = ex_sub.add_parser("bq", parents=[common, long_running], formatter_class=raw, epilog=EXAMPLES_EXPORT,
                          help="export instance metadata to a BigQuery table and wait")
    b.add_argument("table", help="bq://PROJECT.DATASET.TABLE")
    b.add_argument("--write-disposition", choices=("WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND"))
    b.add_argument("--overwrite-table", action="store_true", help="legacy `force`: overwrite an existing table")
    b.add_argument("--filter-config-gcs-uri", help="gs:// filter file of /studies/... lines")
    b.set_defaults(func=store_ops.cmd_export_bq, iam="export-bq")
    g = ex_sub.add_parser("gcs", parents=[common, long_running], formatter_class=raw, epilog=EXAMPLES_EXPORT,
                          help="export instances to Cloud Storage objects under a prefix and wait")
    g.add_argument("prefix", help="gs://BUCKET/PREFIX (objects: PREFIX/STUDY/SERIES/INSTANCE.dcm)")
    g.add_argument("--mime-type", help="e.g. 'application/dicom; transfer-syntax=*' (as stored), image/jpeg")
    g.add_argument("--filter-config-gcs-uri", help="gs:// filter file of /studies/... lines")
    g.set_defaults(func=store_ops.cmd_export_gcs, iam="export-gcs")

    sc = sub.add_parser("storage-class", parents=[common, long_running], formatter_class=raw,
                        epilog=EXAMPLES_STORAGE_CLASS,
                        help="change the storage class of the instances a filter file names, and wait")
    sc.add_argument("storage_class", metavar="CLASS", choices=store_ops.STORAGE_CLASSES,
                    help=" | ".join(store_ops.STORAGE_CLASSES))
    sc.add_argument("--filter-config-gcs-uri", help="gs:// filter file of /studies/... lines (filter build writes one)")
    sc.add_argument("--whole-store", action="store_true", help="change every instance in the store")
    sc.set_defaults(func=store_ops.cmd_storage_class, iam="storage-class")

    fl = sub.add_parser("filter", formatter_class=raw, epilog=EXAMPLES_FILTER, help="filter files (/studies/... lines)")
    fl_sub = fl.add_subparsers(dest="filter_command", required=True)
    fb = fl_sub.add_parser("build", parents=[common], formatter_class=raw, epilog=EXAMPLES_FILTER,
                           help="query the exported metadata (local warehouse or BigQuery) and write a filter file")
    fb.add_argument("--sql", required=True, help="BigQuery SQL selecting StudyInstanceUID[, SeriesInstanceUID"
                    "[, SOPInstanceUID]]")
    fb.add_argument("--output", required=True, help="gs://BUCKET/OBJECT or a local path")
    query.add_warehouse_arguments(fb)
    fb.set_defaults(func=filters.cmd_build, iam="filter-build")
    fv = fl_sub.add_parser("validate", parents=[common], formatter_class=raw, epilog=EXAMPLES_FILTER,
                           help="check every line of a filter file; prints the numbers of bad lines")
    fv.add_argument("file", help="gs://BUCKET/OBJECT or a local path")
    fv.set_defaults(func=filters.cmd_validate, iam="filter-validate")

    q = sub.add_parser("query", parents=[common], formatter_class=raw, epilog=EXAMPLES_QUERY,
                       help="run BigQuery SQL against BigQuery or the local warehouse; table or JSON rows")
    q.add_argument("sql", help="one BigQuery Standard SQL query (legacy [project:dataset.table] names work locally)")
    query.add_warehouse_arguments(q)
    q.set_defaults(func=query.cmd_query, iam="query")

    ops = sub.add_parser("operations", formatter_class=raw, epilog=EXAMPLES_OPS, help="long-running operations")
    ops_sub = ops.add_subparsers(dest="operations_command", required=True)
    d = ops_sub.add_parser("describe", parents=[common], formatter_class=raw, epilog=EXAMPLES_OPS,
                           help="show an operation's state, counters and errors")
    d.add_argument("name", help="projects/P/locations/L/datasets/D/operations/ID")
    d.set_defaults(func=operations.cmd_describe, iam="operations")
    w = ops_sub.add_parser("wait", parents=[common], formatter_class=raw, epilog=EXAMPLES_OPS,
                           help="wait for an operation (progress bar on a terminal), then print its counts")
    w.add_argument("name", help="projects/P/locations/L/datasets/D/operations/ID")
    w.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    w.set_defaults(func=operations.cmd_wait, iam="operations")
    li = ops_sub.add_parser("list", parents=[common], formatter_class=raw, epilog=EXAMPLES_OPS,
                            help="list a dataset's operations with their state and counters")
    li.add_argument("dataset", help="projects/P/locations/L/datasets/D")
    li.set_defaults(func=operations.cmd_list, iam="operations")

    rc = sub.add_parser("reconcile", parents=[common], formatter_class=raw, epilog=EXAMPLES_RECONCILE,
                        help="export the stored instances that have no row in the table (exactly those)")
    rc.add_argument("store", nargs="?", default=os.environ.get("DICOM_STORE"),
                    help="projects/P/locations/L/datasets/D/dicomStores/S (default: $DICOM_STORE)")
    rc.add_argument("table", nargs="?", default=os.environ.get("BIGQUERY_TABLE"),
                    help="bq://PROJECT.DATASET.TABLE (default: $BIGQUERY_TABLE)")
    rc.add_argument("--staging-bucket", default=os.environ.get("STAGING_BUCKET"),
                    help="the functions' staging bucket, where the export claims are (default: $STAGING_BUCKET)")
    rc.add_argument("--dry-run", action="store_true", help="list what would be exported; export nothing")
    rc.add_argument("--unknown-after", type=float, default=60.0,
                    help="seconds after which an export with an unknown outcome may be decided (default 60)")
    rc.add_argument("--stale-claim-seconds", type=float, default=float(os.environ.get("STALE_CLAIM_SECONDS", 600)),
                    help="age after which a claim's holder is gone: more than the function's timeout (default:"
                    " $STALE_CLAIM_SECONDS, else 600)")
    rc.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each export (default 600)")
    query.add_warehouse_arguments(rc)
    rc.set_defaults(func=reconcile.cmd_reconcile, iam="reconcile")
    dead_letters.add_parser(sub, common)

    ls = sub.add_parser("local-stack", formatter_class=raw, epilog=EXAMPLES_STACK,
                        help="start, stop or check the whole pipeline offline (python -m local_stack)")
    ls.add_argument("action", choices=("up", "down", "status"))
    ls.add_argument("--run-dir", type=Path, default=Path(".local-stack"),
                    help="state, logs and data of the background stack (default .local-stack)")
    ls.set_defaults(func=stack.cmd_local_stack, iam="local-stack")
    console.add_parser(sub, common)
    return parser


def _error(message: str) -> None:
    print(f"dicom-pipeline: error: {message}", file=sys.stderr)


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
        _error(str(exc))
        return USAGE
    except DeadLetterError as exc:
        _error(str(exc))
        return FAILED
    except BrokenPipeError:  # output piped into `head` & co.: stop quietly, like other command-line tools
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return FAILED
    except KeyboardInterrupt:
        _error("interrupted (a started operation keeps running; see `dicom-pipeline operations list`)")
        return 130
    except Exception as exc:
        return _api_error(args, exc)


def _api_error(args: argparse.Namespace, exc: Exception) -> int:
    """Every failure of a call to Google Cloud or the local stack as one line: the problem and the fix."""
    from google.auth.exceptions import DefaultCredentialsError

    if isinstance(exc, DefaultCredentialsError):
        _error(f"no Google Cloud credentials ({exc}); run `gcloud auth application-default login`, or pass"
               " --endpoint / set HEALTHCARE_API_ENDPOINT for the local stack")
        return USAGE
    if is_permission_denied(exc):
        _error(permission_message(args.iam, exc))
        return USAGE
    if isinstance(exc, PipelineError) or http_status(exc) is not None:
        fix = "check the names and the endpoint" if http_status(exc) == 404 else "check the endpoint and retry"
        _error(f"{exc} ({fix})")
        return FAILED
    if os.environ.get("DICOM_PIPELINE_DEBUG"):  # a developer's switch: the traceback operators never see
        raise exc
    _error(f"unexpected {type(exc).__name__}: {exc} (set DICOM_PIPELINE_DEBUG=1 for the traceback)")
    return FAILED
