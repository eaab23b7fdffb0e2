"""The import worker processes: a forkserver pool that reads, parses and stages objects off the GIL.

Started on first use by a large import, stopped after being idle for a while and when the emulator
stops; workers exit with the emulator however it ends (kill -9 included).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing
import os
import select
import shutil
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from ..lifecycle import process_alive
from .cloud_storage import GcsReader
from .import_staging import Job, Outcome, stage_object

POOL_WORKERS = min(8, max(2, os.cpu_count() or 2))  # each worker holds pydicom and a few objects
_POOL_IDLE_SECONDS = 30.0  # workers stay for follow-up imports, then exit

_worker_readers: dict[str | None, GcsReader] = {}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def stage_in_worker(emulator_host: str | None, bucket: str, jobs: list[Job], storage_class: str) -> list[Outcome]:
    """Runs in a worker process: stage each job; the outcomes travel back pickled (see ParsedInstance)."""
    reader = _worker_readers.get(emulator_host)
    if reader is None:  # one reader (and kept-alive connection) per emulator host for the worker's life
        reader = _worker_readers[emulator_host] = GcsReader(emulator_host, from_env=False)
    return [stage_object(reader, bucket, name, path, storage_class) for name, path in jobs]


def _init_worker(emulator_pid: int, emulator_mp_dir: str) -> None:
    _exit_with(emulator_pid, emulator_mp_dir)
    _keep_freed_memory()


def _exit_with(pid: int, mp_dir: str) -> None:
    """Exit as soon as process `pid` (the emulator) is gone, however it ended.

    Needed for kill -9: orphaned workers hold the fork server's liveness pipe open and wait forever on
    their task queue, so without this the workers, the fork server and its resource tracker all linger.
    The emulator's multiprocessing directory (pymp-*, the fork server's socket) is removed too, as the
    emulator would have done at a normal exit.
    """
    def wait_for_exit() -> None:
        try:
            pidfd = os.pidfd_open(pid)  # Linux >= 5.3: readable once the process has exited
        except ProcessLookupError:
            return  # already gone
        except (AttributeError, OSError):  # no pidfd here: poll
            while process_alive(pid):
                time.sleep(1.0)
            return
        select.select([pidfd], [], [])

    def watch() -> None:
        wait_for_exit()
        if os.path.basename(mp_dir).startswith("pymp-"):
            shutil.rmtree(mp_dir, ignore_errors=True)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-emulator", daemon=True).start()


def _keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of mapping and faulting in every object body anew.

    Each object's bytes are one allocation above glibc's mmap threshold, so by default every object
    costs an mmap, an munmap and ~55 page faults (measured); raising the thresholds removes them.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)


def _worker_pid() -> int:
    return os.getpid()


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver: workers fork from a clean, single-threaded server that imported pydicom once.

    Not plain fork: this process has threads (HTTP server, SQLite, operations) that fork would copy
    mid-flight. Not spawn: every worker would pay the CPU of importing pydicom and this package again.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


@dataclass(frozen=True)
class Workers:
    executor: ProcessPoolExecutor
    started: Future[None]  # done when every worker process is up (or failed, with the error)


class WorkerPool:
    """The process pool of one Ingest: started on first use, in the background, and stopped when idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: Workers | None = None
        self._users = 0
        self._idle_timer: threading.Timer | None = None
        _pools.add(self)

    @contextlib.contextmanager
    def use(self) -> Iterator[Workers]:
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            if self._workers is None:
                self._workers = _start_workers()
            workers = self._workers
            self._users += 1
        try:
            yield workers
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._workers is not None:
                self._idle_timer = threading.Timer(_POOL_IDLE_SECONDS, self._stop_if_idle)
                self._idle_timer.daemon = True
                self._idle_timer.start()

    def _stop_if_idle(self) -> None:
        with self._lock:
            if self._users:
                return
            workers, self._workers, self._idle_timer = self._workers, None, None
        if workers is not None:
            workers.executor.shutdown(wait=True)

    def discard(self, workers: Workers) -> None:
        """Forget a failed pool (unless already replaced); the next import starts a new one."""
        with self._lock:
            if self._workers is workers:
                self._workers = None
        workers.executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.executor.shutdown(wait=True, cancel_futures=True)


_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_pools() -> None:
    """Stop the workers of emulators never closed, so their semaphores are released cleanly."""
    for pool in list(_pools):
        pool.close()


def _start_workers() -> Workers:
    """Create the pool and start its processes from a background thread.

    Submitting the first tasks is what starts the processes, and it blocks until the fork server has
    imported pydicom: done here, that wait does not hold up the import, which stages in threads meanwhile.
    """
    executor = ProcessPoolExecutor(POOL_WORKERS, mp_context=_worker_context(), initializer=_init_worker,
                                   initargs=(os.getpid(), multiprocessing.util.get_temp_dir()))
    started: Future[None] = Future()

    def start() -> None:
        try:
            pings = [executor.submit(_worker_pid) for _ in range(POOL_WORKERS)]
            for ping in pings:
                ping.result()
        except BaseException as exc:  # handed to the import, which then falls back to threads
            started.set_exception(exc)
        else:
            started.set_result(None)

    threading.Thread(target=start, name="import-pool-start", daemon=True).start()
    return Workers(executor, started)
