"""Long-running operations: run jobs in the background and expose them in the google.longrunning shape.

Mirrors the Healthcare API's LRO rules: `done` is omitted while running, counters are int64 strings
with zero counters omitted, a finished operation carries `response` (with `@type`) or `error`
(google.rpc.Status), and per-file errors go to an operation log (``metadata.logsUrl``), not the body.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ..errors import ApiError, FailedPrecondition, Internal, NotFound
from ..names import DatasetName
from ..store.dicom_store import Storage
from .log_entries import log_entry

logger = logging.getLogger(__name__)

METADATA_TYPE = "type.googleapis.com/google.cloud.healthcare.{version}.OperationMetadata"
_COUNTER_FIELDS = ("success", "failure", "pending", "secondarySuccess", "secondaryFailure")
_SAVE_INTERVAL = 0.5  # seconds between snapshots of a running operation on disk


def now_rfc3339() -> str:
    # isoformat rather than strftime: same text ("2026-01-02T03:04:05.000006Z"), a third less CPU.
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dataset_of(operation_name: str) -> str:
    return operation_name.split("/operations/")[0]


def _parsed(line: str) -> dict[str, Any] | None:
    """One line of an operation log; None for a line still being written by a running operation."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


class Cancelled(ApiError):
    http_status, status = 499, "CANCELLED"


class OperationContext:
    """What a running job sees: its counters, its log and whether a cancel was requested."""

    def __init__(self, name: str, log_path: str, store: str | None = None):
        self.name = name
        self._log_path = log_path
        self.store = store  # the DICOM store it works on: the resource of its Cloud Logging entries
        self.errors_logged = 0
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(_COUNTER_FIELDS, 0)
        self.cancel_requested = False
        self.saved_at: float | None = None  # monotonic time of the last save while running; None: not started

    def add(self, **deltas: int) -> None:
        with self._lock:
            for field, delta in deltas.items():
                self.counters[field] += delta

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def log(self, severity: str, message: str, **fields: Any) -> None:
        """Append one entry to the operation log (JSON lines on disk)."""
        entry = {"timestamp": now_rfc3339(), "severity": severity, "operation": self.name, "message": message}
        if self.store:
            entry["store"] = self.store
        entry.update(fields)
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, open(self._log_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            if severity == "ERROR":
                self.errors_logged += 1

    def check_cancelled(self) -> None:
        if self.cancel_requested:
            raise Cancelled("operation was cancelled")


LogEntries = list[dict[str, Any]]  # an alias: inside OperationEngine, `list` names its method
Job = Callable[[OperationContext], dict[str, Any] | None]


class OperationEngine:
    def __init__(self, storage: Storage, public_url: Callable[[], str], workers: int = 4):
        self._storage = storage
        self._public_url = public_url
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="operation")
        self._running: dict[str, tuple[dict[str, Any], OperationContext]] = {}
        self._lock = threading.Lock()
        # Held while a running snapshot or the final state is saved, so a snapshot never overwrites the final.
        self._save_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._abandon_unfinished()
        # One saver for every running operation: a thread per operation was a tenth of a small import's CPU.
        self._stop_saving = threading.Event()
        self._saver = threading.Thread(target=self._save_periodically, name="operation-saver", daemon=True)
        self._saver.start()

    def _new_id(self) -> str:
        # Opaque numeric ids like the real API's; time-based so they sort and survive restarts.
        return f"{time.time_ns() // 1000}{next(self._ids) % 1000:03d}"

    def _abandon_unfinished(self) -> None:
        """Operations that were running when the process died end as ABORTED (their work is lost)."""
        for op in self._storage.unfinished_operations():
            op["done"] = True
            op["metadata"]["endTime"] = now_rfc3339()
            op["error"] = {"code": 10, "message": "operation aborted: the emulator stopped while it was running"}
            self._storage.save_operation(op["name"], _dataset_of(op["name"]), op)

    def logs_url(self, name: str) -> str:
        return f"{self._public_url()}/_emulator/v1/{name}/logs"

    def start(
        self,
        dataset: DatasetName,
        method: str,
        job: Job,
        version: str,
        response_type: str,
        store: str | None = None,
    ) -> dict[str, Any]:
        """Create an operation, run `job` in the background and return the initial Operation."""
        name = f"{dataset}/operations/{self._new_id()}"
        op: dict[str, Any] = {
            "name": name,
            "metadata": {
                "@type": METADATA_TYPE.format(version=version),
                "apiMethodName": method,
                "createTime": now_rfc3339(),
                "logsUrl": self.logs_url(name),
            },
        }
        context = OperationContext(name, str(self._storage.operation_log_path(name.rsplit("/", 1)[1])), store)
        initial = self._render(op, context)  # before the job starts: the first answer never says done
        self._storage.save_operation(name, str(dataset), initial)
        with self._lock:
            self._running[name] = (op, context)
        self._executor.submit(self._run, op, context, job, str(dataset), response_type)
        return initial

    def record_done(self, dataset: DatasetName, method: str, version: str,
                    response: dict[str, Any]) -> dict[str, Any]:
        """Record an operation whose work finished synchronously (e.g. datasets.create)."""
        now = now_rfc3339()
        name = f"{dataset}/operations/{self._new_id()}"
        op = {
            "name": name,
            "metadata": {"@type": METADATA_TYPE.format(version=version), "apiMethodName": method,
                         "createTime": now, "endTime": now, "logsUrl": self.logs_url(name)},
            "done": True,
            "response": response,
        }
        self._storage.save_operation(name, str(dataset), op)
        return op

    def _run(self, op: dict[str, Any], context: OperationContext, job: Job, dataset: str,
             response_type: str) -> None:
        context.saved_at = time.monotonic()  # the saver snapshots it from _SAVE_INTERVAL on
        outcome: dict[str, Any]
        try:
            outcome = {"response": {"@type": response_type, **(job(context) or {})}}
        except ApiError as exc:
            outcome = {"error": exc.rpc_status()}
        except Exception as exc:  # a bug in the emulator must still end the operation
            logger.exception("operation %s crashed", op["name"])
            outcome = {"error": Internal(f"internal emulator error: {type(exc).__name__}: {exc}").rpc_status()}
        if "error" in outcome and not context.errors_logged and not context.cancel_requested:
            # A failure of the whole operation (a refused WRITE_EMPTY export, no object matching) is logged
            # too: whoever reads the log for the reason finds it there, as for a failed file.
            context.log("ERROR", outcome["error"]["message"], code=outcome["error"]["code"])
        with self._save_lock:
            with self._lock:
                op["metadata"]["endTime"] = now_rfc3339()
                op["done"] = True
                op.update(outcome)
            final = self._render(op, context)
            # Saved before it leaves the running table, so a reader never finds it in neither place.
            self._storage.save_operation(op["name"], dataset, final)
        with self._lock:
            self._running.pop(op["name"], None)

    def _save_periodically(self) -> None:
        """Every _SAVE_INTERVAL, save each operation whose job has run that long since its last save."""
        while not self._stop_saving.wait(_SAVE_INTERVAL / 5):
            now = time.monotonic()
            with self._lock:
                due = [(name, op, context) for name, (op, context) in self._running.items()
                       if context.saved_at is not None and now - context.saved_at >= _SAVE_INTERVAL]
            for name, op, context in due:
                with self._save_lock:
                    if op.get("done"):
                        continue  # _run saved its final state
                    self._storage.save_operation(name, _dataset_of(name), self._render(op, context))
                    context.saved_at = time.monotonic()

    def _render(self, op: dict[str, Any], context: OperationContext) -> dict[str, Any]:
        with self._lock:
            # Copies of the levels that change later; response and error are never changed once set.
            rendered = {**op, "metadata": dict(op["metadata"])}
        counter = {k: str(v) for k, v in context.snapshot().items() if v}
        if counter:
            rendered["metadata"]["counter"] = counter
        if context.cancel_requested:
            rendered["metadata"]["cancelRequested"] = True
        return rendered

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            running = self._running.get(name)
        if running is not None:
            return self._render(*running)
        return self._storage.get_operation(name)

    def list(self, dataset: DatasetName) -> list[dict[str, Any]]:
        with self._lock:
            snapshot = list(self._running.items())
        running = {name: self._render(op, ctx) for name, (op, ctx) in snapshot}
        return [running.get(op["name"], op) for op in self._storage.list_operations(str(dataset))]

    def cancel(self, name: str) -> None:
        with self._lock:
            running = self._running.get(name)
        if running is None:
            op = self._storage.get_operation(name)  # NotFound if unknown
            if op.get("done"):
                raise FailedPrecondition(f"operation {name} has already finished")
            raise NotFound(f"operation {name} not found")
        running[1].cancel_requested = True

    def read_log(self, name: str) -> list[dict[str, Any]]:
        self.get(name)  # NotFound for unknown operations
        path = self._storage.operation_log_path(name.rsplit("/", 1)[1])
        if not path.exists():
            return []
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def log_entries(self, operation_ids: Iterable[str] | None = None) -> LogEntries:
        """The logs of these operations (None: every operation) as Cloud Logging entries, oldest first."""
        if operation_ids is None:
            paths = sorted(self._storage.log_dir.glob("*.jsonl"))
        else:
            paths = [self._storage.operation_log_path(i) for i in sorted(operation_ids) if i.isdigit()]
        entries: LogEntries = []
        for path in paths:
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as fh:
                lines = [entry for entry in map(_parsed, fh) if entry is not None]
            if not lines:
                continue
            try:
                method = self.get(str(lines[0].get("operation")))["metadata"].get("apiMethodName", "")
            except NotFound:  # its dataset was deleted: its log is still Cloud Logging's
                method = ""
            entries.extend(log_entry(line, method, number) for number, line in enumerate(lines))
        entries.sort(key=lambda entry: entry["timestamp"])
        return entries

    def shutdown(self) -> None:
        with self._lock:
            for _, context in self._running.values():
                context.cancel_requested = True
        self._executor.shutdown(wait=True, cancel_futures=False)
        self._stop_saving.set()
        self._saver.join()
