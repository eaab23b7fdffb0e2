"""Storing instances: STOW-RS bodies and dicomStores.import from Cloud Storage. Knows no HTTP.

Both paths parse each instance once (validation + DICOM JSON metadata), stage its bytes in a file and
commit batches to the index. An instance counts as a success only after its batch is committed.

Import speed: reading, parsing and staging is CPU-bound Python that threads cannot spread over cores
(the GIL), so large imports hand it to a pool of worker processes. A worker reads an object, parses
it, writes the staging file and returns only the small ParsedInstance; this process commits batches
to SQLite. Small imports (the pipeline imports one object per upload) stay in threads, and so do the
first objects of a large one while the workers start.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ..dicom.parsing import ParsedInstance, parse_instance
from ..errors import InvalidArgument, NotFound
from ..store.dicom_store import CONFLICT, STORED, StagedInstance, Storage
from .cloud_storage import GcsReader, ObjectPattern
from .import_staging import Job, Outcome, discard, discard_jobs, stage_data, stage_object
from .import_workers import POOL_WORKERS, WorkerPool, Workers, stage_in_worker
from .operations import OperationContext, now_rfc3339

logger = logging.getLogger(__name__)

CHECKSUM_MISMATCH = (
    "An instance already exists in this DICOM Store with the same Study/Series/SOPInstance UID,"
    " but the DICOM files differ (checksum mismatch)"
)
_BATCH = 64  # instances per index transaction during import
_READERS = max(4, (os.cpu_count() or 2) * 2)  # threads staging here; parsing shares the GIL
_POOL_MIN_OBJECTS = 256  # smaller imports finish in threads before workers would be of use
_POOL_TASK = 8  # objects per worker task: amortizes the pool's per-task pickling and wake-ups
_POOL_IN_FLIGHT = 3  # tasks queued per worker, so none waits for this process between tasks
_WARM_UP_IN_FLIGHT = 4  # objects staged here while the workers start (importing pydicom: mostly one core)

@dataclass(frozen=True)
class StoreResult:
    outcome: str  # storage.STORED / DUPLICATE / CONFLICT
    parsed: ParsedInstance
    storage_class: str = "STANDARD"


# (message, resource): where a listener reports a problem that does not undo the store.
Problem = Callable[[str, str], None]
# Called with (store name, newly stored instances, action, problem) after each commit.
StoredListener = Callable[[str, list[StoreResult], str, Problem], None]


def _log_problem(message: str, resource: str) -> None:
    # Outside an operation (STOW) there is no operation log; resource paths hold UIDs, never PHI.
    logger.warning("%s (%s)", message, resource)


class Ingest:
    def __init__(self, storage: Storage, reader: GcsReader | None = None):
        self._storage = storage
        self._reader = reader or GcsReader()
        self._pool = WorkerPool()
        self.listeners: list[StoredListener] = []  # notifications and streaming hook in here

    def close(self) -> None:
        """Stop the import worker processes now (otherwise they exit after a while idle)."""
        self._pool.close()

    def _notify(self, store_name: str, results: list[StoreResult], action: str, problem: Problem) -> None:
        for listener in self.listeners:
            try:
                listener(store_name, results, action, problem)
            except Exception as exc:  # a listener failing must never undo or fail a committed store
                problem(f"{type(exc).__name__}: {exc}", store_name)

    def store_bytes(self, store_name: str, store_id: int, data: bytes, storage_class: str = "STANDARD",
                    action: str = "StoreInstances", parsed: ParsedInstance | None = None) -> StoreResult:
        """Store one Part-10 instance (STOW-RS). Raises InvalidDicom for bad bytes.

        `parsed`: the caller's parse_instance(data), when it already needed one (it is not parsed again).
        """
        parsed = parsed or parse_instance(data)
        staged = StagedInstance(parsed, self._storage.stage(data), storage_class)
        outcome = self._storage.commit_instances(store_id, [staged], now_rfc3339())[0]
        result = StoreResult(outcome, parsed, storage_class)
        if outcome == STORED:
            self._notify(store_name, [result], action, _log_problem)
        return result

    def import_job(self, store_name: str, store_id: int, pattern: ObjectPattern,
                   storage_class: str) -> Callable[[OperationContext], None]:
        """The body of a dicomStores.import operation."""

        def run(context: OperationContext) -> None:
            if pattern.regex is None and self._reader.emulator_host:
                count, outcomes = 1, self._stage_exact(pattern, storage_class, context)
            else:
                objects = self._reader.list_matching(pattern)
                if not objects:
                    raise NotFound(f"no Cloud Storage objects match {pattern.uri}")
                context.add(pending=len(objects))
                count = len(objects)
                outcomes = self._stage_all(pattern.bucket, [o.name for o in objects], storage_class, context)
            batch: list[tuple[str, StagedInstance]] = []
            try:
                for name, staged in outcomes:
                    if isinstance(staged, str):
                        context.add(failure=1, pending=-1)
                        context.log("ERROR", staged, resource=f"gs://{pattern.bucket}/{name}")
                        continue
                    batch.append((name, staged))
                    if len(batch) >= _BATCH:
                        self._commit_batch(store_name, store_id, pattern.bucket, batch, context)
                        batch = []
                        context.check_cancelled()
                if batch:
                    self._commit_batch(store_name, store_id, pattern.bucket, batch, context)
                    batch = []
            finally:
                outcomes.close()  # on cancel or error: stop staging and remove what was staged but not committed
                discard(batch)
            context.check_cancelled()
            failures = context.counters["failure"]
            if failures:
                raise InvalidArgument(
                    f"{failures} of {count} files failed to import; each file's reason is in the"
                    " operation log at metadata.logsUrl"
                )

        return run

    def _stage_exact(self, pattern: ObjectPattern, storage_class: str,
                     context: OperationContext) -> Generator[Outcome, None, None]:
        """The one object an exact URI names, from a storage emulator: one read, staged in this thread.

        The pipeline imports one object per upload; a thread pool and a metadata request for it cost
        more than the object's own work. Outcomes and errors are those of list_matching + _stage_all.
        """
        data = self._reader.read_exact_from_emulator(pattern.bucket, pattern.prefix)
        if data is None:
            raise NotFound(f"no Cloud Storage objects match {pattern.uri}")
        context.add(pending=1)
        name, path = pattern.prefix, self._storage.staging_file()
        try:
            outcome = stage_data(name, data, path, storage_class)
        except BaseException:  # e.g. the staging file could not be written: the import fails, as in _stage_all
            discard_jobs([(name, path)])
            raise
        return (item for item in [outcome])

    def _stage_all(self, bucket: str, names: list[str], storage_class: str,
                   context: OperationContext) -> Generator[Outcome, None, None]:
        """Read, parse and stage objects in parallel; yield each one's outcome as it finishes."""
        # Workers rebuild the reader from its emulator host, so only a plain GcsReader can go to them.
        use_workers = len(names) >= _POOL_MIN_OBJECTS and type(self._reader) is GcsReader
        host = self._reader.emulator_host

        def stage_here(jobs: list[Job]) -> list[Outcome]:
            return [stage_object(self._reader, bucket, name, path, storage_class) for name, path in jobs]

        with contextlib.ExitStack() as stack:
            threads = stack.enter_context(ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="import-read"))
            here = _Lane(lambda jobs: threads.submit(stage_here, jobs), chunk=1, in_flight=_READERS * 4)
            lanes = [here]
            if use_workers:
                workers = stack.enter_context(self._pool.use())
                pool = workers.executor
                lanes.append(_Lane(lambda jobs: pool.submit(stage_in_worker, host, bucket, jobs, storage_class),
                                   chunk=_POOL_TASK, in_flight=POOL_WORKERS * _POOL_IN_FLIGHT,
                                   workers=workers, starting=workers.started))
                here.in_flight = _WARM_UP_IN_FLIGHT  # while the workers start, keep one core busy here
            yield from self._run_lanes(lanes, names, context)

    def _run_lanes(self, lanes: list[_Lane], names: list[str],
                   context: OperationContext) -> Generator[Outcome, None, None]:
        """Feed `names` to the open lanes within each one's in-flight bound; stop feeding on cancel.

        The worker lane opens once its pool has started, which closes the thread lane. If the pool fails
        (a worker killed, or a __main__ the workers cannot import), its objects go back to the queue and
        threads finish the import. If the consumer stops early (cancel, error), running tasks are waited
        for and every staging file not handed out is removed, leaving nothing for the next start's sweep.
        """
        here, pooled = lanes[0], lanes[1] if len(lanes) > 1 else None
        queue = deque(names)
        owners: dict[Future[list[Outcome]], tuple[_Lane, list[Job]]] = {}
        ready: deque[Outcome] = deque()

        def fall_back(exc: BaseException, jobs: list[Job]) -> None:
            assert pooled is not None and pooled.workers is not None
            if pooled.open:
                logger.warning("import worker pool failed (%s: %s); continuing in threads", type(exc).__name__, exc)
                self._pool.discard(pooled.workers)
            pooled.open, pooled.starting = False, None
            here.open, here.in_flight = True, _READERS * 4
            discard_jobs(jobs)
            queue.extendleft(name for name, _ in reversed(jobs))

        def feed() -> None:
            fed = True
            while fed:  # again after a fall-back, which reopens the thread lane
                fed = False
                for lane in lanes:
                    while (lane.open and lane.starting is None and lane.running < lane.in_flight and queue
                           and not context.cancel_requested):
                        jobs = [(queue.popleft(), self._storage.staging_file())
                                for _ in range(min(lane.chunk, len(queue)))]
                        try:
                            future = lane.submit(jobs)
                        except (BrokenProcessPool, RuntimeError) as exc:  # RuntimeError: pool already shut down
                            if lane is not pooled:
                                raise
                            fall_back(exc, jobs)
                            continue
                        owners[future] = (lane, jobs)
                        lane.running += 1
                        fed = True

        try:
            feed()
            while owners or (pooled is not None and pooled.starting is not None and queue):
                waiting: set[Future[Any]] = set(owners)
                if pooled is not None and pooled.starting is not None:
                    waiting.add(pooled.starting)
                done, _ = wait(waiting, return_when=FIRST_COMPLETED)
                if pooled is not None and pooled.starting is not None and pooled.starting in done:
                    start_error = pooled.starting.exception()
                    if start_error is None:
                        pooled.starting, here.open = None, False
                    else:
                        fall_back(start_error, [])
                error: BaseException | None = None
                for future in done:
                    if future not in owners:
                        continue
                    lane, jobs = owners.pop(future)
                    lane.running -= 1
                    exc = CancelledError() if future.cancelled() else future.exception()
                    if exc is None:
                        ready.extend(future.result())
                    elif lane is pooled and isinstance(exc, (BrokenProcessPool, CancelledError)):
                        fall_back(exc, jobs)  # CancelledError: another import shut the broken pool down
                    else:  # e.g. a staging file could not be written: the import fails
                        discard_jobs(jobs)
                        error = error or exc
                if error is not None:
                    raise error
                feed()
                while ready:
                    yield ready.popleft()
        finally:
            for future in owners:
                future.cancel()
            for future, (_, jobs) in owners.items():
                if future.cancelled():
                    discard_jobs(jobs)
                elif future.exception() is None:
                    ready.extend(future.result())
                else:
                    discard_jobs(jobs)
            discard(ready)

    def _commit_batch(self, store_name: str, store_id: int, bucket: str,
                      batch: list[tuple[str, StagedInstance]], context: OperationContext) -> None:
        outcomes = self._storage.commit_instances(store_id, [staged for _, staged in batch], now_rfc3339())
        stored: list[StoreResult] = []
        for (name, staged), outcome in zip(batch, outcomes, strict=True):
            if outcome == CONFLICT:
                context.add(failure=1, pending=-1)
                context.log("ERROR", CHECKSUM_MISMATCH, resource=f"gs://{bucket}/{name}",
                            instance=_instance_path(staged.parsed))
                continue
            context.add(success=1, pending=-1)
            if outcome == STORED:
                stored.append(StoreResult(outcome, staged.parsed, staged.storage_class))
        if stored:
            self._notify(store_name, stored, "ImportDicomData",
                         lambda message, resource: context.log("WARNING", message, resource=resource))


@dataclass
class _Lane:
    """One way of staging objects: threads of this process, or the worker pool."""

    submit: Callable[[list[Job]], Future[list[Outcome]]]
    chunk: int  # objects per task
    in_flight: int  # tasks submitted and not finished, at most
    workers: Workers | None = None  # the pool this lane feeds, if any
    starting: Future[None] | None = None  # not fed until this is done (the pool is starting)
    open: bool = True
    running: int = 0


def _instance_path(parsed: ParsedInstance) -> str:
    return f"studies/{parsed.study_uid}/series/{parsed.series_uid}/instances/{parsed.sop_uid}"
