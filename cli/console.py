"""`dicom-pipeline console`: the web console on 127.0.0.1 (console/), for the local stack or Google Cloud.

The console is its own package; this command becomes `python -m console` (exec: same process, so Ctrl-C and
SIGTERM reach the server directly) rather than importing it, as `local-stack` runs `python -m local_stack`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from .common import UsageError, endpoint

EXAMPLES = """examples:
  dicom-pipeline local-stack up && dicom-pipeline console      # the local stack (reads .local-stack/state.json)
  dicom-pipeline console --project my-project --location us-central1   # Google Cloud, default credentials
"""
# What `python -m console` imports first; missing, the child could only print a traceback.
_CONSOLE_MODULES = ("console", "starlette", "uvicorn", "jinja2", "multipart")


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
    for module in _CONSOLE_MODULES:
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"the console needs {module}: pip install 'dicom-pipeline[console]' (from a checkout:"
                             " make setup)")
    argv = [sys.executable, "-m", "console", "--run-dir", str(args.run_dir), "--host", args.host,
            "--port", str(args.port)]
    for flag, value in (("--endpoint", endpoint(args)), ("--project", args.project), ("--location", args.location),
                        ("--data-dir", args.data_dir), ("--staging-bucket", args.staging_bucket)):
        if value:
            argv += [flag, value]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module, arguments as a list
