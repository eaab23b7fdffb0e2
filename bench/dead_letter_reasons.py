"""What reading a failed file's reason from Cloud Logging costs the functions, against the emulator.

Starts fake-gcs-server and the Healthcare emulator (in this process), runs N failed single-file imports
(each leaves one log entry: the emulator's entries:list scans every operation's log), then times
`operation_logs.find_reasons` for the last of them, as the import function calls it on a failure.

    .venv/bin/python bench/dead_letter_reasons.py --failed 200 --repeat 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dicom_pipeline import healthcare, operation_logs  # noqa: E402
from dicom_pipeline.config import Settings  # noqa: E402
from dicom_pipeline.names import GcsUri  # noqa: E402
from healthcare_emulator import EmulatorServer  # noqa: E402
from local_stack.fake_gcs import FakeGcsServer  # noqa: E402

STORE = "projects/bench/locations/us/datasets/ds/dicomStores/store"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failed", type=int, default=200, help="failed imports logged before measuring")
    parser.add_argument("--repeat", type=int, default=50, help="find_reasons calls timed")
    args = parser.parse_args()

    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with FakeGcsServer() as gcs, EmulatorServer(storage_emulator_host=gcs.url) as emulator:
        client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": gcs.url})
        bucket = client.create_bucket("bench-broken")
        bucket.blob("half.dcm").upload_from_string(b"\0" * 128 + b"DICM" + b"\x02\x00")
        base = f"{emulator.url}/v1/{STORE.rsplit('/dicomStores/', 1)[0]}"
        requests.post(f"{emulator.url}/v1/projects/bench/locations/us/datasets?datasetId=ds", json={}, timeout=30)
        requests.post(f"{base}/dicomStores?dicomStoreId=store", json={}, timeout=30).raise_for_status()
        settings = Settings.from_env({"DICOM_STORE": STORE, "STAGING_BUCKET": "unused",
                                      "HEALTHCARE_API_ENDPOINT": emulator.url, "LOGGING_API_ENDPOINT": emulator.url})
        operation: dict = {}
        for _ in range(args.failed):
            started = healthcare.import_dicom(emulator.url, settings.dicom_store,
                                              GcsUri("bench-broken", "half.dcm"))
            operation = healthcare.wait(emulator.url, started, 60)
        source = "gs://bench-broken/half.dcm"
        operation_logs.find_reasons(settings, operation, source)  # builds the client once, as a warm function
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            reasons, _ = operation_logs.find_reasons(settings, operation, source)
            times.append(time.perf_counter() - start)
            assert len(reasons) == 1, reasons
    print(f"find_reasons with {args.failed} operation logs in the emulator: median"
          f" {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {args.repeat} calls")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
