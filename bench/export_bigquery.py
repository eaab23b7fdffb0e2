"""BigQuery export throughput: one dicomStores.export of N instances' metadata into a new warehouse table.

    .venv/bin/python bench/export_bigquery.py [--count 10000] [--repeat 3]

Steps: generate N small synthetic CT/MR instances and store them through STOW-RS in batches (not timed),
then run `dicomStores.export` with bigqueryDestination (a new table each time, so WRITE_EMPTY creates it)
through google-api-python-client, timed from the export POST to the operation's metadata.endTime.
Prints rows/s per run; target ≥ 5,000 rows/s. The table is then counted with DuckDB as a sanity check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make the repo packages importable
    sys.path.insert(0, str(ROOT))

PROJECT, LOCATION, DATASET, STORE = "bench-project", "us-central1", "bench", "bq-export"
STOW_BATCH = 500


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _stow(url: str, parts: list[bytes]) -> None:
    import requests

    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    answer = requests.post(url, data=body, timeout=600, headers={"Content-Type": content_type})
    answer.raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="instances to export (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="exports to time, each into a new table (default 3)")
    args = parser.parse_args(argv)

    import duckdb

    from dicom_samples import synthetic_studies
    from healthcare_emulator import EmulatorServer
    from local_bigquery.warehouse import create_dataset
    from local_stack.healthcare_api import create_dicom_store, healthcare_service, wait_for_operation

    print(f"cpus: {os.cpu_count()}  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with EmulatorServer() as server:
        healthcare = healthcare_service(server.url)
        datasets = healthcare.projects().locations().datasets()
        store = create_dicom_store(healthcare, PROJECT, LOCATION, DATASET, STORE)
        create_dataset(server.data_dir, PROJECT, "bench")  # exports never create BigQuery datasets

        t = time.perf_counter()
        studies = -(-args.count // 20)
        instances = synthetic_studies(studies, series_per_study=2, instances_per_series=10, sizes=(16,))
        batch: list[bytes] = []
        for _, instance in zip(range(args.count), instances, strict=False):
            batch.append(instance.data)
            if len(batch) == STOW_BATCH:
                _stow(f"{server.url}/v1/{store}/dicomWeb/studies", batch)
                batch = []
        if batch:
            _stow(f"{server.url}/v1/{store}/dicomWeb/studies", batch)
        print(f"generated and stored {args.count} instances through STOW-RS in {time.perf_counter() - t:.1f} s")

        rates = []
        for run in range(args.repeat):
            table = f"t{run}"
            started = time.time()
            operation = datasets.dicomStores().export(name=store, body={"bigqueryDestination": {
                "tableUri": f"bq://{PROJECT}.bench.{table}", "writeDisposition": "WRITE_EMPTY"}}).execute()
            operation = wait_for_operation(healthcare, operation)
            if "error" in operation:
                print(f"export failed: {operation['error']}")
                return 1
            elapsed = _seconds(operation["metadata"]["endTime"]) - started
            exported = int(operation["metadata"]["counter"]["success"])
            rates.append(exported / elapsed)
            print(f"run {run + 1}: {exported} rows in {elapsed:.2f} s = {exported / elapsed:,.0f} rows/s")

        con = duckdb.connect(str(server.data_dir / "warehouse" / f"{PROJECT}.duckdb"), read_only=True)
        count = con.execute("SELECT count(*) FROM bench.t0").fetchone()[0]
        columns = len(con.sql("SELECT * FROM bench.t0 LIMIT 0").columns)
        con.close()
        print(f"table bench.t0: {count} rows, {columns} columns")
        print(f"best {max(rates):,.0f} rows/s, median {sorted(rates)[len(rates) // 2]:,.0f} rows/s (target ≥ 5,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
