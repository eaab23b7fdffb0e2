"""Large imports go through worker processes: same outcomes as in threads, clean fall-back and cancellation."""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_samples import synthetic_instance, synthetic_studies
from healthcare_emulator.dicom.parsing import parse_instance
from healthcare_emulator.jobs import import_workers
from healthcare_emulator.jobs.cloud_storage import GcsReader, parse_object_pattern
from healthcare_emulator.jobs.ingest import CHECKSUM_MISMATCH, Ingest
from healthcare_emulator.jobs.operations import Cancelled, OperationContext
from healthcare_emulator.store.dicom_store import Storage

pytestmark = pytest.mark.integration

COUNT = 300  # above ingest._POOL_MIN_OBJECTS, so the import uses the worker pool


@pytest.fixture(scope="module")
def mixed_bucket(gcs_client):
    """COUNT good instances plus a duplicate, a conflict and three broken objects."""
    bucket = gcs_client.create_bucket(f"workers-{uuid.uuid4().hex[:10]}")
    instances = list(synthetic_studies(studies=COUNT // 10, series_per_study=2, instances_per_series=5))
    assert len(instances) == COUNT
    for index, instance in enumerate(instances):
        bucket.blob(f"set/{index:04d}.dcm").upload_from_string(instance.data)
    first, second, third = instances[0], instances[1], instances[2]
    changed = synthetic_instance(second.study_uid, second.series_uid, second.sop_uid, seed=99)
    bucket.blob("set/dup.dcm").upload_from_string(first.data)
    bucket.blob("set/changed.dcm").upload_from_string(changed.data)
    bucket.blob("set/empty.dcm").upload_from_string(b"")
    bucket.blob("set/text.dcm").upload_from_string(b"not DICOM at all")
    bucket.blob("set/truncated.dcm").upload_from_string(third.data[: len(third.data) // 2])
    return bucket, {f"set/{i:04d}.dcm": instance.data for i, instance in enumerate(instances)}


@pytest.fixture
def store(tmp_path, fake_gcs) -> Iterator[tuple[Storage, Ingest, int]]:
    storage = Storage(tmp_path / "data")
    storage.create_store("s", "d", {})
    ingest = Ingest(storage, GcsReader(fake_gcs.url))
    yield storage, ingest, storage.get_store("s")[0]
    ingest.close()


def run_import(ingest: Ingest, store_id: int, uri: str, tmp_path, context=None) -> OperationContext:
    context = context or OperationContext("op", str(tmp_path / f"log-{uuid.uuid4().hex}.jsonl"))
    try:
        ingest.import_job("s", store_id, parse_object_pattern(uri), "STANDARD")(context)
    except Exception as exc:  # the job ends with an error when some files failed, like the operation
        context.error = exc
    return context


def log_entries(context: OperationContext) -> dict[str, str]:
    import json

    with open(context._log_path, encoding="utf-8") as fh:
        return {json.loads(line)["resource"].rsplit("/", 1)[1]: json.loads(line)["message"] for line in fh}


def test_a_large_import_through_workers_stores_fails_and_counts_like_threads(store, mixed_bucket, tmp_path):
    storage, ingest, store_id = store
    bucket, originals = mixed_bucket

    context = run_import(ingest, store_id, f"gs://{bucket.name}/set/*.dcm", tmp_path)

    assert ingest._pool._workers is not None  # the worker pool did the work
    # dup.dcm is an identical duplicate (a success); base 0001 and changed.dcm conflict: one of them fails.
    assert context.counters["success"] == COUNT + 1
    assert context.counters["failure"] == 4
    assert context.counters["pending"] == 0
    failed = log_entries(context)
    assert "DICM" in failed["text.dcm"] and "empty" in failed["empty.dcm"]
    assert "truncated" in failed["truncated.dcm"] or "unparsable" in failed["truncated.dcm"]
    assert [name for name, reason in failed.items() if reason == CHECKSUM_MISMATCH] in (["0001.dcm"], ["changed.dcm"])
    records = storage.find_instances(store_id)
    assert len(records) == COUNT
    assert not any(storage.staging_dir.iterdir())
    # What workers computed is what this process computes.
    by_sop = {record.sop_uid: record for record in records}
    for data in list(originals.values())[3:20]:
        parsed = parse_instance(data)
        record = by_sop[parsed.sop_uid]
        assert (record.metadata, record.sha256, record.size) == (parsed.metadata_json(), parsed.sha256, parsed.size)
        assert storage.blob_path(store_id, record.sha256).read_bytes() == data


def test_a_worker_pool_that_fails_to_start_falls_back_to_threads(store, mixed_bucket, tmp_path, monkeypatch):
    storage, ingest, store_id = store
    bucket, _ = mixed_bucket
    # The start-up ping now fails in every worker. (Killing the workers instead, as the OOM killer would,
    # also falls back, but CPython's broken-pool clean-up has been seen to hang the test process's exit.)
    monkeypatch.setattr(import_workers, "_worker_pid", functools.partial(int, "not a pid"))

    context = run_import(ingest, store_id, f"gs://{bucket.name}/set/0*.dcm", tmp_path)

    assert context.counters == {"success": COUNT, "failure": 0, "pending": 0, "secondarySuccess": 0,
                                "secondaryFailure": 0}
    assert len(storage.find_instances(store_id)) == COUNT
    assert not any(storage.staging_dir.iterdir())
    assert ingest._pool._workers is None  # discarded; the next import starts a fresh pool


def test_cancel_keeps_what_was_committed_and_leaves_no_staging_files(store, mixed_bucket, tmp_path):
    storage, ingest, store_id = store
    bucket, _ = mixed_bucket
    context = OperationContext("op", str(tmp_path / "log.jsonl"))

    def cancel_after_first_commit(store_name, results, action, problem):
        context.cancel_requested = True

    ingest.listeners.append(cancel_after_first_commit)
    run_import(ingest, store_id, f"gs://{bucket.name}/set/0*.dcm", tmp_path, context)

    assert isinstance(context.error, Cancelled)  # type: ignore[attr-defined]
    stored = len(storage.find_instances(store_id))
    assert 0 < stored < COUNT
    assert context.counters["success"] == stored
    assert not any(storage.staging_dir.iterdir())


def test_a_staging_write_failure_fails_the_import_and_leaves_no_staging_files(store, mixed_bucket, tmp_path,
                                                                             monkeypatch):
    storage, ingest, store_id = store
    bucket, _ = mixed_bucket
    with ingest._pool.use() as workers:  # a started pool: after 4 objects in threads, tasks of 8 go to workers
        workers.started.result(timeout=60)
    calls = iter(range(10**6))
    good = storage.staging_file
    failing = 4 + 8 * 12 + 7  # the last object of a worker task: the 7 before it were staged by then

    def one_unwritable() -> str:
        return str(tmp_path / "missing" / "x.tmp") if next(calls) == failing else good()

    monkeypatch.setattr(storage, "staging_file", one_unwritable)
    context = run_import(ingest, store_id, f"gs://{bucket.name}/set/0*.dcm", tmp_path)

    assert isinstance(context.error, FileNotFoundError)  # type: ignore[attr-defined]
    assert len(storage.find_instances(store_id)) == context.counters["success"] < COUNT
    assert not any(storage.staging_dir.iterdir())


def test_a_small_import_starts_no_workers(store, mixed_bucket, tmp_path):
    _, ingest, store_id = store
    bucket, _ = mixed_bucket

    context = run_import(ingest, store_id, f"gs://{bucket.name}/set/000?.dcm", tmp_path)

    assert context.counters["success"] == 10
    assert ingest._pool._workers is None


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], [root]
    while todo:
        current = todo.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found += children
        todo += children
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_kill_9_of_the_emulator_leaves_no_worker_processes(mixed_bucket, fake_gcs, tmp_path):
    from tests.emulator.test_durability import EmulatorProcess, _setup
    from tests.helpers import wait

    bucket, _ = mixed_bucket
    mp_dirs_before = set(Path(tempfile.gettempdir()).glob("pymp-*"))
    emulator = EmulatorProcess(tmp_path, fake_gcs.url)
    try:
        _, store = _setup(emulator.client, bucket.name)
        op = emulator.client.projects().locations().datasets().dicomStores().import_(
            name=store, body={"gcsSource": {"uri": f"gs://{bucket.name}/set/0*.dcm"}}).execute()
        assert wait(emulator.client, op)["metadata"]["counter"] == {"success": str(COUNT)}
        helpers = _descendants(emulator.process.pid)  # fork server, workers, resource tracker
        assert helpers
        emulator_mp_dirs = set(Path(tempfile.gettempdir()).glob("pymp-*")) - mp_dirs_before
    finally:
        emulator.kill9()

    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in helpers):
        assert time.monotonic() < deadline, [pid for pid in helpers if _running(pid)]
        time.sleep(0.05)
    assert emulator_mp_dirs and not any(d.exists() for d in emulator_mp_dirs)  # the fork server's socket dir


def test_parsed_instances_cross_processes_as_json_text():
    parsed = parse_instance(next(synthetic_studies(1, 1, 1)).data)
    copy = pickle.loads(pickle.dumps(parsed))  # noqa: S301 - our own bytes, as between pool processes
    assert copy == parsed
    assert copy.metadata == parsed.metadata
    assert copy.metadata_json() == parsed.metadata_json()
