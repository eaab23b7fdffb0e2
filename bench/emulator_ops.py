"""CPU of the Healthcare API emulator per single-object import (with its polls and notification) and per
instance exported to BigQuery, measured the way the local stack drives it.

Starts fake-gcs-server (filesystem backend), gcloud's Pub/Sub emulator when installed (otherwise no
notifications) and the emulator as a subprocess; uploads N synthetic instances; then, from many client
threads, one dicomStores.import per object polled with operations.get until done (the pipeline's polling:
0.1 s doubling up to 2 s); then BigQuery exports of batches of instances named in filter files.
CPU comes from /proc (utime + stime of the emulator and its children), so other load on the machine
changes the wall time but not the CPU per operation.

    .venv/bin/python bench/emulator_ops.py --objects 1000 --threads 32 --batch 25 [--repeat 3] [--py-spy OUT]
        [--source DIR]  (another healthcare_emulator version, to compare on the same machine and load)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dicom_samples import synthetic_studies  # noqa: E402
from local_bigquery.warehouse import create_dataset  # noqa: E402
from local_stack.fake_gcs import FakeGcsServer  # noqa: E402
from local_stack.processes import cpu_seconds, free_port, http_ok, wait_until_ready  # noqa: E402

PROJECT, LOCATION, DATASET, STORE = "bench", "us-central1", "ds", "store"
BUCKET, TOPIC = "bench-upload", "dicom-notifications"
TABLE = f"bq://{PROJECT}.warehouse.instances"


_local = threading.local()


def session() -> requests.Session:
    """One kept-alive session per client thread, as the pipeline's pooled API clients."""
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
    return _local.session


def run_operation(base: str, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """POST an LRO method, poll operations.get until done; return (operation, polls)."""
    response = session().post(f"{base}/v1/{path}", json=body, timeout=60)
    response.raise_for_status()
    op, polls, delay = response.json(), 0, 0.1
    while not op.get("done"):
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        response = session().get(f"{base}/v1/{op['name']}", timeout=60)
        response.raise_for_status()
        op, polls = response.json(), polls + 1
    return op, polls


def upload(gcs: str, name: str, data: bytes) -> None:
    response = session().post(f"{gcs}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                              data=data, headers={"Content-Type": "application/octet-stream"}, timeout=60)
    response.raise_for_status()


def start_emulator(data_dir: Path, gcs_url: str, pubsub_host: str | None,
                   source: Path = REPO) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs_url, "PYTHONPATH": str(source)}
    if pubsub_host:
        env["PUBSUB_EMULATOR_HOST"] = pubsub_host
    log = data_dir.parent / "emulator.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "healthcare_emulator", "--host", "127.0.0.1", "--port",
                                    str(port), "--data-dir", str(data_dir)], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=source, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(http_ok(f"{url}/_emulator/health"), process, "healthcare emulator", log, 60)
    return process, url


def create_resources(base: str, gcs: str, pubsub_host: str | None) -> None:
    requests.post(f"{gcs}/storage/v1/b", params={"project": PROJECT}, json={"name": BUCKET},
                  timeout=30).raise_for_status()
    store_body: dict[str, Any] = {}
    if pubsub_host:
        requests.put(f"http://{pubsub_host}/v1/projects/{PROJECT}/topics/{TOPIC}", timeout=30).raise_for_status()
        store_body = {"notificationConfig": {"pubsubTopic": f"projects/{PROJECT}/topics/{TOPIC}",
                                             "sendForBulkImport": True}}
    datasets = f"{base}/v1/projects/{PROJECT}/locations/{LOCATION}/datasets"
    requests.post(f"{datasets}?datasetId={DATASET}", json={}, timeout=30).raise_for_status()
    requests.post(f"{datasets}/{DATASET}/dicomStores?dicomStoreId={STORE}", json=store_body,
                  timeout=30).raise_for_status()


@contextlib.contextmanager
def py_spy(pid: int, out: str | None):
    """py-spy record --gil on the emulator while the block runs (only with --py-spy)."""
    if not out:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    process = subprocess.Popen([str(spy), "record", "--gil", "-r", "200", "-f", "raw", "-o", out, "--pid", str(pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the work starts
    try:
        yield
    finally:
        process.send_signal(2)
        process.wait(60)


def by_thread(pid: int) -> dict[str, float]:
    """CPU seconds of the live threads of `pid` by thread name (gRPC's threads name themselves)."""
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
            found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def user_system(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def phase(pid: int, label: str, tasks: list[Any], work: Any, threads: int, unit: int) -> None:
    threads0, (user0, system0) = by_thread(pid), user_system(pid)
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(work, tasks))
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
    failed = [op for op, _ in results if "error" in op]
    polls = sum(p for _, p in results)
    print(f"{label}: {len(tasks)} ops, {unit} units, {polls} polls ({polls / len(tasks):.1f}/op), "
          f"{len(failed)} failed; emulator CPU {cpu * 1000 / unit:.2f} ms per unit "
          f"({cpu:.2f} s), {len(tasks) / wall:.1f} ops/s, wall {wall:.1f} s", flush=True)
    user, system = (after - before for after, before in zip(user_system(pid), (user0, system0), strict=True))
    named = {name: cpu - threads0.get(name, 0.0) for name, cpu in by_thread(pid).items()}
    named = {name: round(cpu * 1000 / unit, 2) for name, cpu in sorted(named.items(), key=lambda kv: -kv[1])
             if cpu >= 0.05}
    print(f"  user {user * 1000 / unit:.2f} + system {system * 1000 / unit:.2f} ms per unit; live threads (ms per"
          f" unit): {named}", flush=True)
    if failed:
        print("  first failure:", failed[0].get("error"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--export-threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=25, help="instances per export filter file")
    parser.add_argument("--repeat", type=int, default=1, help="import/export rounds (fresh objects each)")
    parser.add_argument("--no-pubsub", action="store_true")
    parser.add_argument("--py-spy", metavar="OUT", help="profile the emulator's import phase to OUT (raw)")
    parser.add_argument("--py-spy-export", metavar="OUT", help="profile the export phase to OUT (raw)")
    parser.add_argument("--source", type=Path, default=REPO,
                        help="directory holding the healthcare_emulator package to run, e.g. an older version"
                             " from `git archive REV healthcare_emulator | tar -x -C DIR`")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        gcs = stack.enter_context(FakeGcsServer(backend="filesystem"))
        pubsub_host = None
        if not args.no_pubsub:
            try:
                from local_stack.pubsub_emulator import PubSubEmulator, launcher_path

                if launcher_path() is not None:
                    pubsub_host = stack.enter_context(PubSubEmulator()).host
            except ImportError:
                pass
        if pubsub_host is None:
            print("no Pub/Sub emulator: running without notifications", flush=True)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emulator-ops-")))
        process, base = start_emulator(tmp / "data", gcs.url, pubsub_host, args.source.resolve())
        stack.callback(lambda: (os.killpg(process.pid, 15), process.wait(30)))
        create_resources(base, gcs.url, pubsub_host)
        create_dataset(tmp / "data", PROJECT, "warehouse")  # exports never create BigQuery datasets
        store = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE}"

        for round_ in range(args.repeat):
            instances = list(synthetic_studies(max(1, args.objects // 10), 2, 5, seed=round_ + 1))[:args.objects]
            names = [f"r{round_}/{i.study_uid}/{i.sop_uid}.dcm" for i in instances]
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda pair: upload(gcs.url, *pair), zip(names, (i.data for i in instances),
                                                                            strict=True)))

            def import_one(name: str) -> tuple[dict[str, Any], int]:
                return run_operation(base, f"{store}:import", {"gcsSource": {"uri": f"gs://{BUCKET}/{name}"}})

            with py_spy(process.pid, args.py_spy if round_ == args.repeat - 1 else None):
                phase(process.pid, f"round {round_} import", names, import_one, args.threads, len(names))

            filters = []
            for start in range(0, len(instances), args.batch):
                chunk = instances[start:start + args.batch]
                name = f"filters/r{round_}-{start}.txt"
                upload(gcs.url, name, "".join(f"/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}\n"
                                              for i in chunk).encode())
                filters.append(name)

            def export_one(name: str) -> tuple[dict[str, Any], int]:
                return run_operation(base, f"{store}:export", {
                    "bigqueryDestination": {"tableUri": TABLE, "writeDisposition": "WRITE_APPEND"},
                    "filterConfig": {"resourcePathsGcsUri": f"gs://{BUCKET}/{name}"}})

            with py_spy(process.pid, args.py_spy_export if round_ == args.repeat - 1 else None):
                phase(process.pid, f"round {round_} export", filters, export_one, args.export_threads,
                      len(instances))


if __name__ == "__main__":
    main()
