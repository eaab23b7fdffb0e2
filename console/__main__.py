"""`python -m console`: serve the web console; what `dicom-pipeline console` runs (in its place, by exec)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .server import serve
from .settings import resolve


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m console", description=__doc__)
    parser.add_argument("--endpoint", help="the local stack's Healthcare API endpoint")
    parser.add_argument("--project", help="Google Cloud project (without --endpoint: Google Cloud)")
    parser.add_argument("--location", help="the datasets' location")
    parser.add_argument("--run-dir", type=Path, default=Path(".local-stack"), help="the local stack's run directory")
    parser.add_argument("--data-dir", help="the local warehouse to query")
    parser.add_argument("--staging-bucket", help="bucket of the dead letters")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8088, help="port (default 8088)")
    args = parser.parse_args(argv)
    try:
        settings = resolve(endpoint=args.endpoint, project=args.project, location=args.location,
                           warehouse_dir=args.data_dir, staging_bucket=args.staging_bucket, run_dir=args.run_dir)
    except ValueError as exc:
        print(f"dicom-pipeline console: error: {exc}", file=sys.stderr)
        return 2
    where = (f"the local stack at {settings.endpoint}" if settings.is_local
             else f"Google Cloud project {settings.project}")
    print(f"console for {where}: http://{args.host}:{args.port}/  (Ctrl-C stops it)", flush=True)
    serve(settings, args.host, args.port)  # uvicorn stops gracefully on Ctrl-C and SIGTERM
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
