"""Cloud Functions cold start, warm per-event overhead and peak RSS, against the local emulators.

    .venv/bin/python bench/functions_cold_start.py [--events 50]

The parent starts fake-gcs-server and the Healthcare emulator, creates a store and uploads objects (not timed).
A fresh child process then measures:
- cold start: `import main` + the first import event handled end to end (emulator time included);
- warm overhead: per import event, wall time minus the time spent inside Healthcare API and Cloud Storage
  calls (those wrappers are installed by this script only), i.e. the function's own work per event (batching
  off: events one at a time have nothing to batch with, and the batch's quiet period is waiting, not work);
- peak RSS of the child (ru_maxrss).
Targets (issue 4): cold ≤ 0.5 s, warm overhead ≤ 5 ms, RSS ≤ 120 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make the repo packages importable
    sys.path.insert(0, str(ROOT))

CHILD = r'''
import json, resource, sys, time
t0 = time.perf_counter()
import main
from cloudevents.http import CloudEvent
t_import = time.perf_counter() - t0
spec = json.loads(sys.argv[1])

def event(name, size, generation):
    return CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "id": name,
                       "source": "//storage.googleapis.com/projects/_/buckets/" + spec["bucket"],
                       "datacontenttype": "application/json"},
                      {"bucket": spec["bucket"], "name": name, "size": str(size), "generation": str(generation)})

first, *rest = spec["objects"]
t1 = time.perf_counter()
assert main.import_dicom_object(event(*first)) == "succeeded"
cold = time.perf_counter() - t0
first_event = time.perf_counter() - t1

from dicom_pipeline import cloud_storage, healthcare
io_time = [0.0]
def timed(fn):
    def wrapper(*a, **k):
        s = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            io_time[0] += time.perf_counter() - s
    return wrapper
healthcare._execute = timed(healthcare._execute)
for name in ("read_preamble_marker", "read_json", "replace_json", "copy", "create_if_absent", "delete"):
    setattr(cloud_storage, name, timed(getattr(cloud_storage, name)))
healthcare.time.sleep = timed(healthcare.time.sleep)  # waiting for the emulator's operation is its time

overheads = []
for obj in rest:
    io_time[0] = 0.0
    s = time.perf_counter()
    assert main.import_dicom_object(event(*obj)) == "succeeded"
    overheads.append(time.perf_counter() - s - io_time[0])
overheads.sort()
print(json.dumps({"import_main_s": t_import, "first_event_s": first_event, "cold_s": cold,
                  "warm_overhead_median_ms": 1000 * overheads[len(overheads) // 2],
                  "warm_overhead_p90_ms": 1000 * overheads[int(len(overheads) * 0.9)],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50, help="warm events after the first (default 50)")
    args = parser.parse_args(argv)

    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    from dicom_samples import synthetic_instance
    from healthcare_emulator import EmulatorServer
    from local_stack.fake_gcs import FakeGcsServer
    from local_stack.healthcare_api import healthcare_service

    with FakeGcsServer() as gcs, EmulatorServer(port=0, storage_emulator_host=gcs.url) as emulator:
        hc = healthcare_service(emulator.url)
        datasets = hc.projects().locations().datasets()
        parent = "projects/bench-project/locations/us-central1"
        datasets.create(parent=parent, datasetId="fn", body={}).execute()
        datasets.dicomStores().create(parent=f"{parent}/datasets/fn", dicomStoreId="s", body={}).execute()
        gcs_client = storage.Client(project="bench-project", credentials=AnonymousCredentials(),
                                    client_options={"api_endpoint": gcs.url})
        upload, staging = (gcs_client.create_bucket(f"{p}-{uuid.uuid4().hex[:8]}") for p in ("up", "stage"))
        objects = []
        for i in range(args.events + 1):
            blob = upload.blob(f"in/{i}.dcm")
            blob.upload_from_string(synthetic_instance(seed=i).data)
            blob.reload()
            objects.append((blob.name, blob.size, blob.generation))
        env = {"PATH": os.environ.get("PATH", ""), "DICOM_STORE": f"{parent}/datasets/fn/dicomStores/s",
               "STAGING_BUCKET": staging.name, "HEALTHCARE_API_ENDPOINT": emulator.url,
               "STORAGE_EMULATOR_HOST": gcs.url, "PYTHONPATH": str(ROOT),
               # One event at a time has nothing to batch with: without this, each would wait the batch's
               # quiet period (50 ms), which is waiting, not the function's work.
               "IMPORT_BATCH_WINDOW_SECONDS": "0"}
        spec = json.dumps({"bucket": upload.name, "objects": objects})
        result = subprocess.run([sys.executable, "-c", CHILD, spec], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=600, check=False)
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return 1
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"import main:            {figures['import_main_s'] * 1000:7.1f} ms")
    print(f"first event:            {figures['first_event_s'] * 1000:7.1f} ms (emulator time included)")
    print(f"cold start:             {figures['cold_s']:7.3f} s   (target ≤ 0.5 s)")
    print(f"warm overhead (median): {figures['warm_overhead_median_ms']:7.2f} ms  (target ≤ 5 ms; "
          f"p90 {figures['warm_overhead_p90_ms']:.2f} ms; excludes time inside API calls)")
    print(f"peak RSS:               {figures['peak_rss_mb']:7.1f} MB  (target ≤ 120 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
