"""Rendered retrieval latency: WADO-RS `…/instances/{uid}/rendered` thumbnails of a typical CT, over HTTP.

    .venv/bin/python bench/rendered_retrieval.py [--count 50] [--size 512] [--viewport 128,128] [--accept image/jpeg]

Steps: store N synthetic 16-bit CT instances (--size x --size, explicit VR little endian; not timed) with
STOW-RS, then GET each one's `rendered` with `viewport` (default 128,128, a console thumbnail) one after the
other from one client over a keep-alive connection, twice (the first pass warms caches). Prints the median and
95th percentile latency of the second pass, thumbnails/s, and the latency of the same request without a
viewport (full-size image) and as image/png, so the cost of each step shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make the repo packages importable
    sys.path.insert(0, str(ROOT))

PROJECT, LOCATION, DATASET, STORE = "bench-project", "us-central1", "bench", "rendered"


def _timed(session, urls: list[str], accept: str, params: dict[str, str]) -> list[float]:
    """Milliseconds per GET, in order; every answer must be a 200 image."""
    times = []
    for url in urls:
        start = time.perf_counter()
        response = session.get(url, headers={"Accept": accept}, params=params, timeout=60)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200 or not response.headers["Content-Type"].startswith("image/"):
            raise SystemExit(f"GET {url} answered {response.status_code}: {response.text[:200]}")
    return times


def _summary(label: str, times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 20 else max(times)
    return (f"{label}: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms,"
            f" {len(times) / (sum(times) / 1000):.0f} images/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50, help="instances (default 50)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns of each CT (default 512)")
    parser.add_argument("--viewport", default="128,128", help="viewport=vw,vh of the thumbnails (default 128,128)")
    parser.add_argument("--accept", default="image/jpeg", help="rendered media type (default image/jpeg)")
    args = parser.parse_args(argv)

    import requests

    from dicom_samples import synthetic_studies
    from healthcare_emulator import EmulatorServer
    from local_stack.healthcare_api import create_dicom_store, healthcare_service

    print(f"cpus: {os.cpu_count()}  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with EmulatorServer() as server:
        store = create_dicom_store(healthcare_service(server.url), PROJECT, LOCATION, DATASET, STORE)
        web = f"{server.url}/v1/{store}/dicomWeb"
        session = requests.Session()
        urls = []
        studies = -(-args.count // 20)
        instances = synthetic_studies(studies, series_per_study=2, instances_per_series=10, sizes=(args.size,))
        for _, instance in zip(range(args.count), instances, strict=False):
            session.post(f"{web}/studies", data=instance.data, headers={"Content-Type": "application/dicom"},
                         timeout=60).raise_for_status()
            urls.append(f"{web}/studies/{instance.study_uid}/series/{instance.series_uid}"
                        f"/instances/{instance.sop_uid}/rendered")
        print(f"stored {len(urls)} CT instances of {args.size}x{args.size} px, 16-bit")

        viewport = {"viewport": args.viewport}
        _timed(session, urls, args.accept, viewport)  # warm-up pass
        print(_summary(f"{args.accept} viewport={args.viewport}", _timed(session, urls, args.accept, viewport)))
        print(_summary(f"{args.accept} full size", _timed(session, urls, args.accept, {})))
        print(_summary(f"image/png viewport={args.viewport}", _timed(session, urls, "image/png", viewport)))
    print("  one client, requests one after the other over a keep-alive connection; latency includes HTTP")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
