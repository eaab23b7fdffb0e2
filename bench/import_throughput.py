"""Import throughput: one dicomStores.import of N synthetic instances from fake-gcs-server, versus Orthanc.

    .venv/bin/python bench/import_throughput.py [--count 2000] [--sizes 64,128,256,512] [--skip-orthanc]

Steps: generate N Part-10 instances (image sizes cycle through --sizes), upload them to fake-gcs-server,
run ONE `dicomStores.import` of gs://bucket/prefix/**.dcm on the emulator through google-api-python-client
and time it from the import POST to the operation's end (its metadata.endTime). Then POST the same files to
Orthanc's REST API (`/instances`) with a few client threads. Orthanc cannot bind loopback only, so it and
its client run inside a private network namespace: this script re-executes itself under `unshare -n`
with --orthanc-only and reads back one JSON line.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make the repo packages importable
    sys.path.insert(0, str(ROOT))

PROJECT, LOCATION, DATASET, STORE = "bench-project", "us-central1", "bench", "import"
BUCKET, PREFIX = "import-bench", "incoming"
ORTHANC_BINARY = "/usr/sbin/Orthanc"
RESULT_MARKER = "ORTHANC_RESULT "
# Seconds between operation polls. The end is the operation's own metadata.endTime, so a slow poll does
# not blur the timing, and the polling client (in this process) takes little CPU from the import.
POLL_INTERVAL = 0.25
MB = 1024 * 1024


# --- data --------------------------------------------------------------------------------------------


def generate(files_dir: Path, count: int, sizes: tuple[int, ...]) -> int:
    """Write `count` synthetic instances (10 per series, 2 series per study); return the total bytes."""
    from dicom_samples import synthetic_studies

    per_study = 20
    studies = -(-count // per_study)
    total = 0
    instances = synthetic_studies(studies, series_per_study=2, instances_per_series=per_study // 2, sizes=sizes)
    for index, instance in zip(range(count), instances, strict=False):
        (files_dir / f"{index:06d}.dcm").write_bytes(instance.data)
        total += len(instance.data)
    return total


def upload(gcs_url: str, files: list[Path]) -> None:
    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    local = threading.local()

    def put(path: Path) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                                   client_options={"api_endpoint": gcs_url})
        client.bucket(BUCKET).blob(f"{PREFIX}/{path.name}").upload_from_filename(
            str(path), content_type="application/dicom")

    storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                   client_options={"api_endpoint": gcs_url}).create_bucket(BUCKET)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, files))


def _cpu_seconds() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user+system CPU seconds) for every process, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


def _cpu_by_role(gcs_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of this process, of fake-gcs-server, and of our other live descendants
    (the import workers and their fork server)."""
    procs = _cpu_seconds()
    me = os.getpid()
    roles = {"this process": 0.0, "fake-gcs-server": 0.0, "import workers": 0.0}
    for pid, (_, seconds) in procs.items():
        ancestor, chain = pid, []
        while ancestor > 1 and ancestor != me:
            chain.append(ancestor)
            ancestor = procs.get(ancestor, (0, 0.0))[0]
        if ancestor != me:
            continue
        if pid == me:
            roles["this process"] += seconds
        elif gcs_pid in chain:
            roles["fake-gcs-server"] += seconds
        else:
            roles["import workers"] += seconds
    return roles


# --- the emulator ------------------------------------------------------------------------------------


def bench_emulator(gcs_url: str, gcs_pid: int | None, data_dir: Path, count: int) -> dict[str, Any]:
    from healthcare_emulator import EmulatorServer
    from local_stack.healthcare_api import create_dicom_store, healthcare_service

    with EmulatorServer(data_dir=data_dir, storage_emulator_host=gcs_url) as server:
        healthcare = healthcare_service(server.url)
        datasets = healthcare.projects().locations().datasets()
        store_name = create_dicom_store(healthcare, PROJECT, LOCATION, DATASET, STORE)

        request = datasets.dicomStores().import_(name=store_name,
                                                 body={"gcsSource": {"uri": f"gs://{BUCKET}/{PREFIX}/**.dcm"}})
        cpu_before = _cpu_by_role(gcs_pid)
        started = time.time()  # wall clock, comparable with the emulator's RFC 3339 timestamps
        operation = request.execute()
        get = datasets.operations().get
        while "done" not in operation:
            time.sleep(POLL_INTERVAL)
            operation = get(name=operation["name"]).execute()
        seen_done = time.time()
        end_time = datetime.fromisoformat(operation["metadata"]["endTime"].replace("Z", "+00:00")).timestamp()
        elapsed = end_time - started
        # Workers that exit during the import would be missed; the pool outlives the import.
        cpu = {role: seconds - cpu_before[role] for role, seconds in _cpu_by_role(gcs_pid).items()}

        counter = operation["metadata"].get("counter", {})
        if "error" in operation or counter != {"success": str(count)}:
            raise RuntimeError(f"import did not store every instance: {json.dumps(operation)[:2000]}")
        metrics = datasets.dicomStores().getDICOMStoreMetrics(name=store_name).execute()
        if metrics.get("instanceCount") != str(count):
            raise RuntimeError(f"store holds {metrics.get('instanceCount')} instances, expected {count}")
        server.emulator.ingest.close()  # stop the import workers now, not at exit, so they sit out the Orthanc run
    return {"seconds": elapsed, "instances": count, "cpu": cpu, "seen_done_after": seen_done - started}


# --- Orthanc (inside `unshare -n`) ---------------------------------------------------------------------


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies, so nothing outlives a crashed bench (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # run the `finally` and `with` exits: stop servers, remove temp dirs


def orthanc_child(files_dir: Path, threads: int, parent_pid: int) -> int:
    """Runs inside the namespace: start Orthanc, POST every file, print one JSON result line."""
    import requests

    from local_stack.processes import free_port, http_ok, stop, wait_until_ready

    _die_with_parent()
    if os.getppid() != parent_pid:  # the bench died before the line above
        return 1
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    files = sorted(files_dir.glob("*.dcm"))
    work = Path(tempfile.mkdtemp(prefix="orthanc-bench-"))
    process = None
    try:
        port = free_port()
        config = {
            "Name": "bench", "StorageDirectory": str(work / "db"), "IndexDirectory": str(work / "db"),
            "HttpPort": port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": False, "HttpThreadsCount": 10, "ConcurrentJobs": 2,
        }
        (work / "orthanc.json").write_text(json.dumps(config))
        log = work / "orthanc.log"
        with open(log, "wb") as out:
            # preexec_fn is safe here: this process has no other threads yet.
            process = subprocess.Popen([ORTHANC_BINARY, str(work / "orthanc.json")], stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_die_with_parent)
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(http_ok(f"{base}/system"), process, "Orthanc", log)

        local = threading.local()

        def post(path: Path) -> None:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            response = session.post(f"{base}/instances", data=path.read_bytes(),
                                    headers={"Content-Type": "application/dicom"}, timeout=60)
            response.raise_for_status()
            if response.json().get("Status") != "Success":
                raise RuntimeError(f"Orthanc did not store {path.name}: {response.text[:300]}")

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(post, files))
        elapsed = time.perf_counter() - started

        stored = requests.get(f"{base}/statistics", timeout=10).json()["CountInstances"]
        if stored != len(files):
            raise RuntimeError(f"Orthanc holds {stored} instances, expected {len(files)}")
        version = requests.get(f"{base}/system", timeout=10).json().get("Version")
        print(RESULT_MARKER + json.dumps({"seconds": elapsed, "instances": len(files), "threads": threads,
                                          "version": version}), flush=True)
        return 0
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


def bench_orthanc(files_dir: Path, threads: int) -> dict[str, Any]:
    if not os.path.exists(ORTHANC_BINARY):
        raise RuntimeError(f"{ORTHANC_BINARY} not found: apt-get install -y orthanc (or pass --skip-orthanc)")
    # unshare execs Python in place, so the child is our direct child and sets its own death signal.
    argv = ["unshare", "-n", sys.executable, str(Path(__file__).resolve()), "--orthanc-only",
            "--files", str(files_dir), "--orthanc-threads", str(threads), "--parent-pid", str(os.getpid())]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:  # interrupted or timed out: let the child stop Orthanc itself
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"the Orthanc run failed (exit {process.returncode}); output:\n{stdout}")
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return dict(json.loads(line[len(RESULT_MARKER):]))
    raise RuntimeError(f"the Orthanc run printed no result line; output:\n{stdout}")


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="instances to import (default 2000)")
    parser.add_argument("--sizes", default="64,128,256,512",
                        help="comma-separated image sizes (rows = columns, 16-bit) cycled through")
    parser.add_argument("--skip-orthanc", action="store_true", help="only measure the emulator")
    parser.add_argument("--orthanc-threads", type=int, default=4, help="client threads POSTing to Orthanc")
    parser.add_argument("--orthanc-only", action="store_true", help=argparse.SUPPRESS)  # the netns child
    parser.add_argument("--files", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.orthanc_only:
        return orthanc_child(args.files, args.orthanc_threads, args.parent_pid)

    from local_stack.fake_gcs import FakeGcsServer

    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # clean up (servers, temp dirs) on kill too
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    print(f"cpus: {os.cpu_count()}  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        files_dir = Path(tmp) / "files"
        files_dir.mkdir()
        t = time.perf_counter()
        total = generate(files_dir, args.count, sizes)
        files = sorted(files_dir.glob("*.dcm"))
        print(f"generated {len(files)} instances, sizes {'/'.join(map(str, sizes))} px, {total / MB:.1f} MB"
              f" in {time.perf_counter() - t:.1f} s")

        with FakeGcsServer() as gcs:
            t = time.perf_counter()
            upload(gcs.url, files)
            print(f"uploaded to fake-gcs-server in {time.perf_counter() - t:.1f} s")
            gcs_process = getattr(gcs, "_process", None)  # only for CPU accounting
            ours = bench_emulator(gcs.url, gcs_process.pid if gcs_process else None, Path(tmp) / "emulator",
                                  len(files))
        rate = ours["instances"] / ours["seconds"]
        print(f"emulator import: {ours['instances']} instances in {ours['seconds']:.2f} s ="
              f" {rate:.0f} instances/s, {total / MB / ours['seconds']:.1f} MB/s")
        print(f"  timed from the import POST to the operation's endTime; the client, polling every {POLL_INTERVAL} s,"
              f" saw it done after {ours['seen_done_after']:.2f} s")
        roles = ", ".join(f"{role} {seconds:.2f} s" for role, seconds in ours["cpu"].items())
        print(f"  CPU during the import: {roles}"
              f" (of {ours['seconds'] * (os.cpu_count() or 1):.2f} s on {os.cpu_count()} cores); this process"
              " also runs the HTTP client that polls the operation")

        if not args.skip_orthanc:
            theirs = bench_orthanc(files_dir, args.orthanc_threads)
            orthanc_rate = theirs["instances"] / theirs["seconds"]
            print(f"Orthanc {theirs['version']} POST /instances ({theirs['threads']} client threads):"
                  f" {theirs['instances']} instances in {theirs['seconds']:.2f} s = {orthanc_rate:.0f} instances/s,"
                  f" {total / MB / theirs['seconds']:.1f} MB/s")
            print(f"ratio emulator/Orthanc: {rate / orthanc_rate:.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
