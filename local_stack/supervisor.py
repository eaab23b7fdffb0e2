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

import base64
import hashlib
import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from .stack import LocalStack

UNDELIVERED_AFTER = 20.0  # seconds after an upload with no outcome before its event counts as lost


class Supervisor:
    def __init__(self, stack: LocalStack, reconcile_every: float | None, check_every: float = 0.5):
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
            from .processes import tail

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
            lost = self.republish_lost_uploads()
            if lost:
                self.note(f"{lost} uploads had no import outcome {UNDELIVERED_AFTER:.0f} s after upload (their"
                          " event was never published or was lost): published their events again")
        except Exception as exc:
            self.note(f"upload sweep failed: {type(exc).__name__}: {exc}")

    def republish_lost_uploads(self) -> int:
        from dicom_pipeline.config import Settings
        from dicom_pipeline.events import StorageObject
        from dicom_pipeline.importer import skip_reason

        from .stack import STAGING_BUCKET, STORAGE_TOPIC, UPLOAD_BUCKET

        client = self.stack.storage_client()
        outcomes = {blob.name for blob in client.list_blobs(STAGING_BUCKET, prefix="outcomes/import/")}
        dead = {str(json.loads(blob.download_as_bytes()).get("object"))
                for blob in client.list_blobs(STAGING_BUCKET, prefix="dead-letter/import/")}
        settings = Settings(dicom_store=self.stack.settings().dicom_store, staging_bucket=STAGING_BUCKET)
        cutoff = datetime.now(UTC).timestamp() - UNDELIVERED_AFTER
        lost: list[dict[str, Any]] = []
        for blob in client.list_blobs(UPLOAD_BUCKET):
            obj = StorageObject(blob.bucket.name, blob.name, int(blob.size or 0), str(blob.generation))
            key = f"{obj.bucket}/{obj.name}#{obj.generation}"
            record = f"outcomes/import/{hashlib.sha256(key.encode()).hexdigest()[:40]}.json"
            if record in outcomes or obj.path in dead or skip_reason(obj, settings) is not None or \
                    blob.updated.timestamp() > cutoff or time.time() - self.republished.get(key, 0) < 60:
                continue
            self.republished[key] = time.time()
            lost.append(_finalize_message(blob))
        for start in range(0, len(lost), 100):
            response = requests.post(f"http://{self.stack.pubsub.host}/v1/projects/{self.stack.names.project}"
                                     f"/topics/{STORAGE_TOPIC}:publish", json={"messages": lost[start:start + 100]},
                                     timeout=30)
            response.raise_for_status()
        return len(lost)


def _finalize_message(blob: Any) -> dict[str, Any]:
    """The OBJECT_FINALIZE message fake-gcs-server publishes (JSON_API_V1), for a stored object."""
    data = {"kind": "storage#object", "id": f"{blob.bucket.name}/{blob.name}", "name": blob.name,
            "bucket": blob.bucket.name, "generation": str(blob.generation), "contentType": blob.content_type,
            "storageClass": "STANDARD", "size": str(blob.size), "md5Hash": blob.md5_hash, "crc32c": blob.crc32c}
    attributes = {"bucketId": blob.bucket.name, "eventType": "OBJECT_FINALIZE", "objectId": blob.name,
                  "objectGeneration": str(blob.generation), "payloadFormat": "JSON_API_V1",
                  "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"data": base64.b64encode(json.dumps(data).encode()).decode(), "attributes": attributes}
