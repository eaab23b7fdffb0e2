"""Coalescing of concurrent calls inside one function instance (gen2 serves many requests at once).

`Coalescer`: calls with the same key that arrive within `window` seconds of the first become one batch,
run once by the first caller (the leader) for everyone; each caller gets the batch's result or error.
`SharedCall`: concurrent calls with the same key share one run (e.g. polling one operation).
Both know nothing about Healthcare or Cloud Storage; exporter.py decides what a batch does.
"""

from __future__ import annotations

import threading
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
    def __init__(self, run_batch: Callable[[Hashable, list[T]], R]):
        self._run_batch = run_batch
        self._guard = threading.Lock()
        self._open: dict[Hashable, _Batch[T, R]] = {}

    def submit(self, key: Hashable, item: T, window: float, max_items: int) -> tuple[R, int]:
        """Run `item` in a batch with the others of `key`; returns the batch's result and its size."""
        with self._guard:
            batch = self._open.get(key)
            leader = batch is None
            if batch is None:
                batch = self._open[key] = _Batch()
            batch.items.append(item)
            if len(batch.items) >= max_items:
                batch.full.set()
                del self._open[key]  # closed: the next caller starts a new batch
        if leader:
            batch.full.wait(window)
            with self._guard:
                if self._open.get(key) is batch:
                    del self._open[key]
            items = list(batch.items)  # closed above: nobody appends any more
            batch.run(lambda: self._run_batch(key, items))
        return batch.get(), len(batch.items)


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
