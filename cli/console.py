"""`dicom-pipeline console`: the web console on 127.0.0.1 (console/), for the local stack or Google Cloud."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import OK, UsageError

EXAMPLES = """examples:
  dicom-pipeline local-stack up && dicom-pipeline console      # the local stack (reads .local-stack/state.json)
  dicom-pipeline console --project my-project --location us-central1   # Google Cloud, default credentials
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("console", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=EXAMPLES, help="serve the web console on 127.0.0.1 (local stack or Google Cloud)")
    p.add_argument("--project", help="Google Cloud project (without --endpoint: Google Cloud, default credentials)")
    p.add_argument("--location", help="the datasets' location (default: the local stack's, else us-central1)")
    p.add_argument("--run-dir", type=Path, default=Path(".local-stack"),
                   help="the local stack's run directory, read for its endpoints (default .local-stack)")
    p.add_argument("--data-dir", help="the local warehouse to query (default: the local stack's)")
    p.add_argument("--staging-bucket", help="bucket of the dead letters (default: $STAGING_BUCKET or the stack's)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8088, help="port (default 8088)")
    p.set_defaults(func=cmd_console, iam="console")


def cmd_console(args: argparse.Namespace) -> int:
    try:
        from console.server import serve
        from console.settings import resolve
    except ModuleNotFoundError as exc:
        raise UsageError(f"the console needs {exc.name}: pip install 'dicom-pipeline[console]' (from a checkout:"
                         " make setup)") from exc
    settings = resolve(endpoint=args.endpoint, project=args.project, location=args.location,
                       warehouse_dir=args.data_dir, staging_bucket=args.staging_bucket, run_dir=args.run_dir)
    where = (f"the local stack at {settings.endpoint}" if settings.is_local
             else f"Google Cloud project {settings.project}")
    print(f"console for {where}: http://{args.host}:{args.port}/  (Ctrl-C stops it)", flush=True)
    serve(settings, args.host, args.port)
    return OK
