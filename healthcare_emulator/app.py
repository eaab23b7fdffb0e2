"""The emulator's request-handling core: storage, operations and ingest behind the route table."""

from __future__ import annotations

import logging
import os
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path

from .bigquery_export import append_instances
from .dicom import first_value
from .errors import ApiError, Internal
from .gcs import GcsReader
from .http import Request, Response, json_response
from .ingest import Ingest, Problem, StoreResult
from .notifications import ChangedInstance, Notifier
from .operations import OperationEngine
from .routes import resolve
from .storage import Storage
from .warehouse import WAREHOUSE_DIR

logger = logging.getLogger(__name__)
TAG_MODALITY = "00080060"


class Emulator:
    """Everything a handler needs; one per data directory."""

    def __init__(self, data_dir: str | os.PathLike[str], public_url: Callable[[], str],
                 storage_emulator_host: str | None = None, pubsub_emulator_host: str | None = None):
        self.data_dir = Path(data_dir)
        self.storage = Storage(self.data_dir)
        self.engine = OperationEngine(self.storage, public_url)
        self.gcs = GcsReader(storage_emulator_host)
        self.ingest = Ingest(self.storage, self.gcs)
        self.notifier = Notifier(pubsub_emulator_host)
        self.ingest.listeners.append(self._publish_stored)
        self.public_url = public_url

    def handle(self, request: Request) -> Response:
        """Route a request; every failure becomes the Google JSON error envelope."""
        try:
            handler, params = resolve(request)
            return handler(self, request, **params)
        except ApiError as exc:
            return json_response(exc.envelope(), exc.http_status)
        except Exception as exc:  # keep serving whatever one request did
            logger.error("internal error on %s %s\n%s", request.method, request.path, traceback.format_exc())
            error = Internal(f"internal emulator error: {type(exc).__name__}")
            return json_response(error.envelope(), error.http_status)

    def _publish_stored(self, store_name: str, results: list[StoreResult], action: str, problem: Problem) -> None:
        changed = [ChangedInstance(r.parsed.study_uid, r.parsed.series_uid, r.parsed.sop_uid,
                                   str(first_value(r.parsed.metadata, TAG_MODALITY) or ""), r.storage_class)
                   for r in results]
        self.publish_changed(store_name, changed, action, problem)

    def publish_changed(self, store_name: str, instances: list[ChangedInstance], action: str,
                        problem: Problem) -> None:
        """Tell the store's notification topics and stream tables that instances were stored or changed."""
        store_id, store = self.storage.get_store(store_name)
        self.notifier.instances_changed(store, instances, action, problem)
        streams = store.get("streamConfigs") or []
        if not streams:
            return
        records = [record for i in instances
                   for record in self.storage.find_instances(store_id, i.study_uid, i.series_uid, i.sop_uid)]
        for stream in streams:
            destination = stream.get("bigqueryDestination", {})
            table_uri = destination.get("tableUri", "")
            try:
                append_instances(self, table_uri, store_name, records, bool(destination.get("includeSourceStore")),
                                 json_schema="schemaJson" in destination)
            except ApiError as exc:  # streaming problems never undo the store (the real API logs them)
                problem(f"could not stream to {table_uri}: {exc.message}", store_name)

    def reset(self) -> None:
        self.storage.reset()
        shutil.rmtree(self.data_dir / WAREHOUSE_DIR, ignore_errors=True)

    def close(self) -> None:
        self.engine.shutdown()
        self.ingest.close()
        self.notifier.close()
