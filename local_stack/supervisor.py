"""The local stack's platform duties: what Cloud Run, Pub/Sub and Cloud Scheduler do for the pipeline in
production, done here by one thread.

- A component whose process exits is started again on the same port, as Cloud Run replaces a crashed
  instance, and the supervisor says so. After the Pub/Sub emulator restarts, its topics and subscriptions
  are created again (it keeps nothing; in production they would still be there).
- Every `reconcile_every` seconds: the reconciler (dicom_pipeline/reconciler.py), as the Cloud Scheduler job
  of terraform/reconcile.tf runs it; and a sweep for uploads whose event never reached the import function.
  fake-gcs-server publishes each event once, in a goroutine, and on a failure only logs "error publishing
  event: ..." without the object's name, while the upload has already answered 200; an emulator restart
  also loses the events it held. So the sweep compares the upload bucket with the import function's outcome
  records and dead letters, and publishes the event again for an object that has neither (the import is
  idempotent: a second event of an imported object does nothing).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol

from .processes import ManagedServer, tail

UNDELIVERED_AFTER = 20.0  # seconds after an upload with no outcome before its event counts as lost


class Platform(Protocol):
    """What the supervisor needs of the stack (local_stack/stack.py's LocalStack)."""

    components: list[ManagedServer]

    def restored(self, component: ManagedServer) -> None: ...

    def reconcile(self, dry_run: bool = False) -> Any: ...

    def republish_lost_uploads(self, older_than: float, republished: dict[str, float]) -> int: ...


class Supervisor:
    def __init__(self, stack: Platform, reconcile_every: float | None, check_every: float = 0.5):
        self.stack = stack
        self.reconcile_every = reconcile_every
        self.check_every = check_every
        self.notes: list[str] = []  # what it did, in order (also printed)
        self.restarts: dict[str, int] = {}
        self.republished: dict[str, float] = {}  # object path#generation → when its event was published again
        self.reconciled = 0  # reconciler passes run
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-stack-supervisor", daemon=True)
        self._next_sweep = time.monotonic() + (reconcile_every or 0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(120)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"local-stack supervisor: {text}", file=sys.stderr, flush=True)

    def _loop(self) -> None:
        while not self._stopping.wait(self.check_every):
            self._restart_exited()
            if self.reconcile_every and time.monotonic() >= self._next_sweep:
                self.sweep()
                self._next_sweep = time.monotonic() + self.reconcile_every

    def _restart_exited(self) -> None:
        for component in list(self.stack.components):
            process = component._process
            if process is None or process.poll() is None or self._stopping.is_set():
                continue
            last = tail(component.log, 3).replace("\n", " | ")
            self.note(f"{component.name} exited with code {process.returncode} (its log ended: {last[-400:]});"
                      " restarting it on the same port")
            try:
                component.start()
                self.stack.restored(component)
            except Exception as exc:  # tried again on the next check
                self.note(f"restarting {component.name} failed: {type(exc).__name__}: {exc}")
                continue
            self.restarts[component.name] = self.restarts.get(component.name, 0) + 1
            self.note(f"{component.name} restarted (pid {component._process.pid if component._process else '?'})")

    def sweep(self) -> None:
        """One reconciler pass and one sweep for lost upload events; a failure is noted, never raised."""
        try:
            report = self.stack.reconcile()
            self.reconciled += 1
            if report.exported or report.deferred:
                self.note(report.summary())
        except Exception as exc:
            self.note(f"reconcile failed: {type(exc).__name__}: {exc}")
        try:
            lost = self.stack.republish_lost_uploads(UNDELIVERED_AFTER, self.republished)
            if lost:
                self.note(f"{lost} uploads had no import outcome {UNDELIVERED_AFTER:.0f} s after upload (their"
                          " event was never published or was lost): published their events again")
        except Exception as exc:
            self.note(f"upload sweep failed: {type(exc).__name__}: {exc}")
