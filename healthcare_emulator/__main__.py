"""python -m healthcare_emulator --host 127.0.0.1 --port 8089 --data-dir DIR"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .api.server import BANNER, EmulatorServer
from .lifecycle import serve_until_stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m healthcare_emulator", description=BANNER)
    parser.add_argument("--host", default=os.environ.get("HEALTHCARE_EMULATOR_HOST_ADDRESS", "127.0.0.1"),
                        help="address to bind (default 127.0.0.1; anything else exposes the emulator)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HEALTHCARE_EMULATOR_PORT", "8089")),
                        help="port to listen on; 0 picks a free one (default 8089)")
    parser.add_argument("--data-dir", default=os.environ.get("HEALTHCARE_EMULATOR_DATA_DIR", ".emulator-data"),
                        help="directory for the index, blobs and operation logs (kept across restarts)")
    parser.add_argument("--verbose", action="store_true", help="log every request (paths only, never queries)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    server = EmulatorServer(args.host, args.port, args.data_dir)
    print(BANNER, flush=True)
    print(f"Listening on {server.url} (data dir {server.data_dir})", flush=True)
    print(f"  gcloud:  export CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE={server.url}/", flush=True)
    print(f"  python:  client_options={{'api_endpoint': '{server.url}'}}", flush=True)
    for variable in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
        print(f"  {variable}={os.environ.get(variable) or '(unset: the real service)'}", flush=True)
    return serve_until_stopped(server.serve_forever, server.stop)


if __name__ == "__main__":
    sys.exit(main())
