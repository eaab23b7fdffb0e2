"""Export throughput: one dicomStores.export of N instances to PNG objects in fake-gcs-server.

    .venv/bin/python bench/export_png.py [--count 1000] [--size 256] [--mime-type image/png]

Steps: generate N synthetic 16-bit CT instances (--size x --size pixels), upload them to fake-gcs-server and
import them (not timed), then run ONE `dicomStores.export` with gcsDestination.mimeType (default image/png)
through google-api-python-client and time it from the export POST to the operation's metadata.endTime.
Prints instances/s, objects/s and the CPU this process (emulator + client) and fake-gcs-server used.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make the repo packages importable
    sys.path.insert(0, str(ROOT))

PROJECT, LOCATION, DATASET, STORE = "bench-project", "us-central1", "bench", "export"
BUCKET = "export-bench"


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="instances to export (default 1000)")
    parser.add_argument("--size", type=int, default=256, help="rows and columns of each instance (default 256)")
    parser.add_argument("--mime-type", default="image/png", help="gcsDestination.mimeType (default image/png)")
    args = parser.parse_args(argv)

    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    from dicom_samples import synthetic_studies
    from healthcare_emulator import EmulatorServer
    from local_stack.fake_gcs import FakeGcsServer
    from local_stack.healthcare_api import create_dicom_store, healthcare_service, wait_for_operation

    print(f"cpus: {os.cpu_count()}  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with FakeGcsServer() as gcs, EmulatorServer(storage_emulator_host=gcs.url) as server:
        client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": gcs.url})
        bucket = client.create_bucket(BUCKET)
        t = time.perf_counter()
        studies = -(-args.count // 20)
        instances = synthetic_studies(studies, series_per_study=2, instances_per_series=10, sizes=(args.size,))
        total = 0
        for index, instance in zip(range(args.count), instances, strict=False):
            bucket.blob(f"in/{index:06d}.dcm").upload_from_string(instance.data)
            total += len(instance.data)
        print(f"generated and uploaded {args.count} instances of {args.size}x{args.size} px"
              f" ({total / 2**20:.1f} MB) in {time.perf_counter() - t:.1f} s")

        healthcare = healthcare_service(server.url)
        datasets = healthcare.projects().locations().datasets()
        store = create_dicom_store(healthcare, PROJECT, LOCATION, DATASET, STORE)
        imported = wait_for_operation(healthcare, datasets.dicomStores().import_(
            name=store, body={"gcsSource": {"uri": f"gs://{BUCKET}/in/*.dcm"}}).execute())
        assert imported["metadata"]["counter"] == {"success": str(args.count)}, imported

        cpu_here, cpu_gcs = _cpu_of(os.getpid()), _cpu_of(gcs._process.pid)
        operation = wait_for_operation(healthcare, datasets.dicomStores().export(
            name=store, body={"gcsDestination": {"uriPrefix": f"gs://{BUCKET}/out", "mimeType": args.mime_type}},
        ).execute())
        cpu_here, cpu_gcs = _cpu_of(os.getpid()) - cpu_here, _cpu_of(gcs._process.pid) - cpu_gcs
        seconds = _seconds(operation["metadata"]["endTime"]) - _seconds(operation["metadata"]["createTime"])
        counter = operation["metadata"].get("counter", {})
        written = sum(1 for _ in client.list_blobs(BUCKET, prefix="out/"))
        if "error" in operation or counter.get("success") != str(args.count):
            print(f"export did not succeed: {operation.get('error')} counter={counter}")
            return 1
        print(f"export {args.mime_type!r}: {args.count} instances, {written} objects in {seconds:.2f} s"
              f" = {args.count / seconds:.0f} instances/s")
        print(f"  timed from the export POST (createTime) to the operation's endTime; CPU during the export:"
              f" emulator process {cpu_here:.1f} s, fake-gcs-server {cpu_gcs:.1f} s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
