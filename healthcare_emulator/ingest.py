"""Storing instances: STOW-RS bodies and dicomStores.import from Cloud Storage. Knows no HTTP.

Both paths parse each instance once (validation + DICOM JSON metadata), stage its bytes in a file and
commit batches to the index. An instance counts as a success only after its batch is committed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from .dicom import InvalidDicom, ParsedInstance, parse_instance
from .errors import InvalidArgument, NotFound
from .gcs import GcsReader, ObjectPattern
from .operations import OperationContext, now_rfc3339
from .storage import CONFLICT, STORED, StagedInstance, Storage

CHECKSUM_MISMATCH = (
    "An instance already exists in this DICOM Store with the same Study/Series/SOPInstance UID,"
    " but the DICOM files differ (checksum mismatch)"
)
_BATCH = 64  # instances per index transaction during import
_READERS = max(4, (os.cpu_count() or 2) * 2)  # parallel object reads; parsing shares the GIL


@dataclass(frozen=True)
class StoreResult:
    outcome: str  # storage.STORED / DUPLICATE / CONFLICT
    parsed: ParsedInstance


StoredListener = Callable[[str, list[StoreResult], str], None]


class Ingest:
    def __init__(self, storage: Storage, reader: GcsReader | None = None):
        self._storage = storage
        self._reader = reader or GcsReader()
        # Called with (store name, results, action) after each commit; part 2 (notifications) hooks in here.
        self.listeners: list[StoredListener] = []

    def _notify(self, store_name: str, results: list[StoreResult], action: str) -> None:
        for listener in self.listeners:
            listener(store_name, results, action)

    def store_bytes(self, store_name: str, store_id: int, data: bytes, storage_class: str = "STANDARD",
                    action: str = "StoreInstances") -> StoreResult:
        """Store one Part-10 instance (STOW-RS). Raises InvalidDicom for bad bytes."""
        parsed = parse_instance(data)
        staged = StagedInstance(parsed, self._storage.stage(data), storage_class)
        outcome = self._storage.commit_instances(store_id, [staged], now_rfc3339())[0]
        result = StoreResult(outcome, parsed)
        if outcome == STORED:
            self._notify(store_name, [result], action)
        return result

    def import_job(self, store_name: str, store_id: int, pattern: ObjectPattern,
                   storage_class: str) -> Callable[[OperationContext], None]:
        """The body of a dicomStores.import operation."""

        def run(context: OperationContext) -> None:
            objects = self._reader.list_matching(pattern)
            if not objects:
                raise NotFound(f"no Cloud Storage objects match {pattern.uri}")
            context.add(pending=len(objects))
            for batch in _batches(self._stage_all(pattern.bucket, [o.name for o in objects], storage_class,
                                                  context), _BATCH):
                self._commit_batch(store_name, store_id, pattern.bucket, batch, context)
                context.check_cancelled()
            failures = context.counters["failure"]
            if failures:
                raise InvalidArgument(
                    f"{failures} of {len(objects)} files failed to import; each file's reason is in the"
                    " operation log at metadata.logsUrl"
                )

        return run

    def _stage_all(self, bucket: str, names: list[str], storage_class: str,
                   context: OperationContext) -> Iterator[tuple[str, StagedInstance]]:
        """Read, parse and stage objects in parallel; yield the good ones, count and log the bad ones."""
        with ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="import-read") as pool:
            pending: set[Future[tuple[str, StagedInstance | str]]] = set()
            queue = iter(names)
            for name in queue:
                pending.add(pool.submit(self._stage_one, bucket, name, storage_class))
                if len(pending) >= _READERS * 4:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    name, staged = future.result()
                    if isinstance(staged, str):
                        context.add(failure=1, pending=-1)
                        context.log("ERROR", staged, resource=f"gs://{bucket}/{name}")
                    else:
                        yield name, staged
                    if not context.cancel_requested:
                        next_name = next(queue, None)
                        if next_name is not None:
                            pending.add(pool.submit(self._stage_one, bucket, next_name, storage_class))

    def _stage_one(self, bucket: str, name: str, storage_class: str) -> tuple[str, StagedInstance | str]:
        try:
            data = self._reader.read(bucket, name)
        except Exception as exc:  # the object may vanish or the read may fail; that file fails alone
            return name, f"could not read the object: {type(exc).__name__}: {exc}"
        if not data:
            return name, "not a DICOM file: the object is empty"
        try:
            parsed = parse_instance(data)
        except InvalidDicom as exc:
            return name, str(exc)
        return name, StagedInstance(parsed, self._storage.stage(data), storage_class)

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
                stored.append(StoreResult(outcome, staged.parsed))
        if stored:
            self._notify(store_name, stored, "ImportDicomData")


def _instance_path(parsed: ParsedInstance) -> str:
    return f"studies/{parsed.study_uid}/series/{parsed.series_uid}/instances/{parsed.sop_uid}"


def _batches(items: Iterator[tuple[str, StagedInstance]], size: int) -> Iterator[list[tuple[str, StagedInstance]]]:
    batch: list[tuple[str, StagedInstance]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
