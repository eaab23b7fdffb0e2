"""Console server time per page (p50/p95) over a store of 10,000 instances, and thumbnail latency.

    .venv/bin/python bench/console_pages.py [--instances 10000] [--repeat 30]

Steps: start the Healthcare emulator (its own process, as in the local stack) and fill one store by multipart
STOW-RS with --instances synthetic 64x64 instances (500 studies x 2 series x 10 instances for 10,000; not timed),
start the console on a thread, then GET each page --repeat times. Prints, per page, the server's time from the
console's Server-Timing header (the console's share: its own work plus the calls it makes to the store) and the
client's wall time, p50/p95 in ms. Thumbnails: the study thumbnail (QIDO series, QIDO instances, rendered) and
the instance thumbnail (rendered only); whether the store rendered them or the console drew the placeholder is
printed with them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make the repo packages importable
    sys.path.insert(0, str(ROOT))

PROJECT, LOCATION, DATASET, STORE = "bench-project", "us-central1", "bench", "console"
STORE_NAME = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE}"


def _start_emulator(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    from console.server import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "healthcare_emulator", "--host", "127.0.0.1", "--port",
                                str(port), "--data-dir", data_dir], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/v1/projects/{PROJECT}/locations/{LOCATION}/datasets", timeout=2)
            return process, url
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start") from None
            time.sleep(0.1)


def _fill(url: str, instances: int, batch: int = 250) -> tuple[str, str, str, str]:
    """STOW-RS in multipart batches; returns one (PatientID, study, series, instance) to open pages on."""
    from dicom_samples import synthetic_studies

    base = f"{url}/v1/projects/{PROJECT}/locations/{LOCATION}/datasets"
    requests.post(f"{base}?datasetId={DATASET}", json={}, timeout=30).raise_for_status()
    requests.post(f"{base}/{DATASET}/dicomStores?dicomStoreId={STORE}", json={}, timeout=30).raise_for_status()
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    first = None
    for instance in synthetic_studies(-(-instances // 20), series_per_study=2, instances_per_series=10):
        first = first or ("SYNTH-0000", instance.study_uid, instance.series_uid, instance.sop_uid)
        parts.append(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + instance.data
                     + b"\r\n")
        if len(parts) == batch:
            _stow(url, boundary, parts)
            parts = []
    if parts:
        _stow(url, boundary, parts)
    assert first is not None
    return first


def _stow(url: str, boundary: str, parts: list[bytes]) -> None:
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    response = requests.post(f"{url}/v1/{STORE_NAME}/dicomWeb/studies", data=body, timeout=300, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    response.raise_for_status()


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000, help="instances in the store (default 10000)")
    parser.add_argument("--repeat", type=int, default=30, help="requests per page (default 30)")
    args = parser.parse_args(argv)

    from console.server import ConsoleServer
    from console.settings import Settings

    with tempfile.TemporaryDirectory(prefix="console-bench-") as data_dir:
        emulator, url = _start_emulator(data_dir)
        try:
            started = time.perf_counter()
            patient, study, series, instance = _fill(url, args.instances)
            count = requests.get(f"{url}/v1/{STORE_NAME}:getDICOMStoreMetrics", timeout=60).json()["instanceCount"]
            print(f"store: {count} instances in {int(count) // 20} studies, filled in"
                  f" {time.perf_counter() - started:.0f} s (not timed below)")
            settings = Settings(project=PROJECT, location=LOCATION, endpoint=url, warehouse_dir=data_dir,
                                store=STORE_NAME)
            with ConsoleServer(settings) as console:
                _measure(console.url, args.repeat, patient, study, series, instance)
            _measure_store(url, args.repeat)
        finally:
            emulator.terminate()
            emulator.wait(timeout=30)
    return 0


def _measure(console: str, repeat: int, patient: str, study: str, series: str, instance: str) -> None:
    store = f"/datasets/{DATASET}/stores/{STORE}"
    pages = {
        "datasets (stores, metrics)": "/datasets",
        "studies, first page": store,
        "studies, page at offset 250": f"{store}?offset=250",
        "studies, PatientID search": f"{store}?patient_id={patient}",
        "studies, date range search": f"{store}?date_from=2024-03-01&date_to=2024-03-31",
        "series of a study": f"{store}/studies/{study}",
        "instances of a series": f"{store}/studies/{study}/series/{series}",
        "instance (metadata tree)": f"{store}/studies/{study}/series/{series}/instances/{instance}",
        "operations": "/operations",
        "pipeline": "/pipeline",
        "thumbnail: study (2 QIDO + rendered)": f"{store}/studies/{study}/thumbnail",
        "thumbnail: instance (rendered)": f"{store}/studies/{study}/series/{series}/instances/{instance}/rendered",
    }
    session = requests.Session()
    print(f"\n{'page':40} {'server p50':>10} {'p95':>8} {'client p50':>11} {'p95':>8}  (ms, {repeat} requests each)")
    for title, path in pages.items():
        server, client = [], []
        response = session.get(console + path, timeout=60)  # warm: the first request builds clients and caches
        response.raise_for_status()
        for _ in range(repeat):
            started = time.perf_counter()
            response = session.get(console + path, timeout=60)
            client.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            server.append(float(response.headers["Server-Timing"].split("dur=")[1]))
        note = ""
        if "thumbnail" in title:
            note = "  placeholder (the store refused to render)" if response.headers.get(
                "X-Thumbnail") == "placeholder" else f"  {response.headers['Content-Type']} from the store"
        (s50, s95), (c50, c95) = _percentiles(server), _percentiles(client)
        print(f"{title:40} {s50:10.1f} {s95:8.1f} {c50:11.1f} {c95:8.1f}{note}")


def _measure_store(url: str, repeat: int) -> None:
    """The store's share of the studies page: the same QIDO and metrics calls, straight to the emulator."""
    calls = {"QIDO studies, limit 26": (f"{url}/v1/{STORE_NAME}/dicomWeb/studies", {
                 "limit": "26", "offset": "0",
                 "includefield": "StudyDescription,NumberOfStudyRelatedInstances,ModalitiesInStudy"}),
             "getDICOMStoreMetrics": (f"{url}/v1/{STORE_NAME}:getDICOMStoreMetrics", {})}
    print(f"\n{'the store alone (no console)':40} {'p50':>10} {'p95':>8}")
    session = requests.Session()
    for title, (call, params) in calls.items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            session.get(call, params=params, timeout=60).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        p50, p95 = _percentiles(times)
        print(f"{title:40} {p50:10.1f} {p95:8.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
