"""Coalescing of concurrent calls inside one function instance (gen2 serves many requests at once).

`Coalescer`: calls with the same key that arrive together become one batch, run once by the first caller
(the leader) for everyone; each caller gets the batch's result or error. The leader closes the batch when
it is full, when `quiet` seconds pass with no new call (a lone call waits only that long), or at the
latest `window` seconds after it opened (a steady stream is cut into batches).
`SharedCall`: concurrent calls with the same key share one run (e.g. polling one operation).
Both know nothing about Healthcare or Cloud Storage; exporter.py decides what a batch does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Outcome(Generic[R]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None

    def run(self, action: Callable[[], R]) -> None:
        try:
            self.result = action()
        except BaseException as exc:  # every waiting caller raises it in its own thread
            self.error = exc
        finally:
            self.done.set()

    def get(self) -> R:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class _Batch(_Outcome[R], Generic[T, R]):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[T] = []
        self.full = threading.Event()


class Coalescer(Generic[T, R]):
    def __init__(self, run_batch: Callable[[Hashable, list[T]], R], quiet: float = 0.05):
        self._run_batch = run_batch
        self._quiet = quiet
        self._guard = threading.Lock()
        self._arrived = threading.Condition(self._guard)
        self._open: dict[Hashable, _Batch[T, R]] = {}

    def submit(self, key: Hashable, item: T, window: float, max_items: int) -> tuple[R, int]:
        """Run `item` in a batch with the others of `key`; returns the batch's result and its size."""
        with self._guard:
            batch = self._open.get(key)
            leader = batch is None
            if batch is None:
                batch = self._open[key] = _Batch()
            batch.items.append(item)
            self._arrived.notify_all()
            if len(batch.items) >= max_items:
                batch.full.set()
                del self._open[key]  # closed: the next caller starts a new batch
        if leader:
            self._collect(key, batch, window)
            items = list(batch.items)  # closed: nobody appends any more
            batch.run(lambda: self._run_batch(key, items))
        return batch.get(), len(batch.items)

    def _collect(self, key: Hashable, batch: _Batch[T, R], window: float) -> None:
        now = time.monotonic()
        deadline, quiet_until, size = now + window, now + self._quiet, len(batch.items)
        with self._guard:
            while not batch.full.is_set():
                now = time.monotonic()
                if len(batch.items) != size:  # someone joined: wait another quiet period
                    size, quiet_until = len(batch.items), now + self._quiet
                if now >= min(deadline, quiet_until):
                    break
                self._arrived.wait(min(deadline, quiet_until) - now)  # woken by any key's arrival
            if self._open.get(key) is batch:
                del self._open[key]


class SharedCall(Generic[R]):
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running: dict[Hashable, _Outcome[R]] = {}

    def call(self, key: Hashable, action: Callable[[], R]) -> R:
        with self._guard:
            outcome = self._running.get(key)
            leader = outcome is None
            if outcome is None:
                outcome = self._running[key] = _Outcome()
        if leader:
            try:
                outcome.run(action)
            finally:
                with self._guard:
                    del self._running[key]
        return outcome.get()
