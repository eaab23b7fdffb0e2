"""CPU per Cloud Storage call: the functions' JSON API calls (dicom_pipeline.cloud_storage) against the same calls
through google-cloud-storage, each against fake-gcs-server on its filesystem backend (printed, not a test).

    python bench/gcs_calls.py [--calls 1000]

For each call: the client's CPU (this process) and fake-gcs-server's CPU, per call, one call at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")

from dicom_pipeline import cloud_storage
from local_stack.fake_gcs import FakeGcsServer
from local_stack.processes import cpu_seconds

BUCKET = "bench-calls"


@dataclass(frozen=True)
class _Settings:
    storage_emulator_host: str
    project: str = "bench-project"


def measure(name: str, calls: int, server_pid: int, call: Callable[[int], object]) -> None:
    call(-1)  # connections open, code paths warm
    server, client = cpu_seconds(server_pid), time.process_time()
    for n in range(calls):
        call(n)
    client_ms = 1000 * (time.process_time() - client) / calls
    server_ms = 1000 * (cpu_seconds(server_pid) - server) / calls
    print(f"  {name:44} client {client_ms:5.2f} ms   fake-gcs-server {server_ms:5.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind (default 1000)")
    args = parser.parse_args()
    import google.cloud.storage as gcs
    from google.api_core.exceptions import NotFound
    from google.auth.credentials import AnonymousCredentials

    with FakeGcsServer(backend="filesystem") as server:
        pid = server._process.pid
        settings = _Settings(server.url)
        def library_client() -> gcs.Client:
            client = gcs.Client(project="bench-project", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": server.url})
            client._http.trust_env = False  # as cloud_storage.client() sets it against an emulator
            return client

        library_client().create_bucket(BUCKET)
        # A client that did not create the bucket, as in the functions: one that did caches the bucket's
        # metadata and checks the bucket in a background thread after every 404.
        bucket = library_client().bucket(BUCKET)
        blob_data = b"\0" * 128 + b"DICM" + b"\0" * 2048
        bucket.blob("source.dcm").upload_from_string(blob_data)

        def library_missing(n: int) -> None:
            with contextlib.suppress(NotFound):
                bucket.blob(f"missing/{n}.json").download_as_bytes()

        print(f"{args.calls} calls of each kind, one at a time")
        print("dicom_pipeline.cloud_storage (google-auth AuthorizedHttp over a urllib3 pool, JSON API):")
        measure("create record (ifGenerationMatch=0)", args.calls, pid,
                lambda n: cloud_storage.create_if_absent(settings, BUCKET, f"new/{n}.json", {"status": "claimed"}))
        measure("replace record", args.calls, pid,
                lambda n: cloud_storage.replace_json(settings, BUCKET, f"new/{n}.json", {"status": "succeeded"}))
        measure("read a missing record (404)", args.calls, pid,
                lambda n: cloud_storage.read_json(settings, BUCKET, f"missing/{n}.json"))
        measure("read a record", args.calls, pid,
                lambda n: cloud_storage.read_json(settings, BUCKET, f"new/{max(n, 0)}.json"))
        measure("4-byte ranged read at 128", args.calls, pid,
                lambda n: cloud_storage.read_preamble_marker(settings, BUCKET, "source.dcm", None))
        measure("copy", args.calls, pid,
                lambda n: cloud_storage.copy(settings, BUCKET, "source.dcm", None, BUCKET, f"copies/{n}.dcm"))
        print("google-cloud-storage (Blob methods, as the functions called them before):")
        measure("create record (if_generation_match=0)", args.calls, pid,
                lambda n: bucket.blob(f"lib/{n}.json").upload_from_string(
                    b'{"status": "claimed"}', content_type="application/json", if_generation_match=0))
        measure("replace record", args.calls, pid,
                lambda n: bucket.blob(f"lib/{n}.json").upload_from_string(
                    b'{"status": "succeeded"}', content_type="application/json"))
        measure("read a missing record (404)", args.calls, pid, library_missing)
        measure("read a record", args.calls, pid, lambda n: bucket.blob(f"lib/{max(n, 0)}.json").download_as_bytes())
        measure("4-byte ranged read at 128", args.calls, pid,
                lambda n: bucket.blob("source.dcm").download_as_bytes(start=128, end=131, raw_download=True))
        measure("copy", args.calls, pid,
                lambda n: bucket.copy_blob(bucket.blob("source.dcm"), bucket, f"libcopies/{n}.dcm"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
