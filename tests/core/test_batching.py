"""Coalescing of concurrent calls (dicom_pipeline.batching): real threads, no fakes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dicom_pipeline.batching import Coalescer, SharedCall


def test_calls_within_the_window_run_as_one_batch() -> None:
    batches: list[list[int]] = []
    coalescer: Coalescer[int, str] = Coalescer(lambda key, items: batches.append(sorted(items)) or f"op-{key}")
    start = threading.Barrier(10)

    def call(n: int) -> tuple[str, int]:
        start.wait()
        return coalescer.submit("k", n, window=2.0, max_items=10)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(call, range(10)))
    # Ten callers, max_items 10: the batch closes full, long before the 2 s window.
    assert batches == [list(range(10))]
    assert results == [("op-k", 10)] * 10


def test_max_items_splits_and_keys_never_mix() -> None:
    batches: list[tuple[str, list[int]]] = []
    guard = threading.Lock()

    def run(key, items):
        with guard:
            batches.append((key, sorted(items)))
        return len(items)

    coalescer: Coalescer[int, int] = Coalescer(run)
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda n: coalescer.submit(n % 2, n, window=0.3, max_items=3), range(12)))
    assert sorted(n for _, items in batches for n in items) == list(range(12))
    assert all(len(items) <= 3 for _, items in batches)
    assert all(all(n % 2 == key for n in items) for key, items in batches)


def test_a_failing_batch_raises_in_every_caller() -> None:
    def run(key, items):
        raise RuntimeError(f"export of {len(items)} failed")

    coalescer: Coalescer[int, int] = Coalescer(run)
    start = threading.Barrier(4)

    def call(n: int) -> None:
        start.wait()
        coalescer.submit("k", n, window=1.0, max_items=4)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(call, n) for n in range(4)]
        for future in futures:
            with pytest.raises(RuntimeError, match="export of 4 failed"):
                future.result()
    # The failed batch is closed: the next call starts a new one.
    with pytest.raises(RuntimeError, match="export of 1 failed"):
        coalescer.submit("k", 9, window=0.0, max_items=4)


def test_shared_call_runs_once_for_concurrent_callers() -> None:
    runs = []
    release = threading.Event()
    shared: SharedCall[str] = SharedCall()

    def action() -> str:
        runs.append(1)
        release.wait(5)
        return "done"

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(shared.call, "op-1", action) for _ in range(5)]
        while not runs:
            pass
        threading.Timer(0.2, release.set).start()
        assert [f.result() for f in futures] == ["done"] * 5
    assert len(runs) == 1
    # Finished: a later call runs again (a new poll), it does not reuse the old answer.
    assert shared.call("op-1", lambda: "again") == "again"


def test_a_lone_call_waits_only_the_quiet_period_and_other_keys_do_not_close_a_batch() -> None:
    import time

    coalescer: Coalescer[int, int] = Coalescer(lambda key, items: len(items), quiet=0.5)
    started = time.monotonic()
    assert coalescer.submit("alone", 1, window=30.0, max_items=10) == (1, 1)
    assert time.monotonic() - started < 5  # the quiet period, not the 30 s window

    results: dict[str, tuple[int, int]] = {}

    def late_same_key() -> None:
        time.sleep(0.1)  # within the quiet period: joins
        results["late"] = coalescer.submit("k", 2, window=30.0, max_items=10)

    def other_key() -> None:
        time.sleep(0.05)
        results["other"] = coalescer.submit("other", 3, window=30.0, max_items=10)

    threads = [threading.Thread(target=late_same_key), threading.Thread(target=other_key)]
    for thread in threads:
        thread.start()
    results["first"] = coalescer.submit("k", 1, window=30.0, max_items=10)
    for thread in threads:
        thread.join()
    assert results["first"] == results["late"] == (2, 2)
    assert results["other"] == (1, 1)
