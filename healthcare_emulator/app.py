"""Wiring: the DICOM store, the operation engine, import, notifications and the warehouse for one data directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from local_bigquery.warehouse import WAREHOUSE_DIR

from .jobs.changes import ChangePublisher
from .jobs.cloud_storage import GcsReader
from .jobs.ingest import Ingest
from .jobs.notifications import Notifier
from .jobs.operations import OperationEngine
from .store.dicom_store import Storage


class Emulator:
    """Everything a handler needs; one per data directory. Knows no HTTP (api/ sits on top)."""

    def __init__(self, data_dir: str | os.PathLike[str], public_url: Callable[[], str],
                 storage_emulator_host: str | None = None, pubsub_emulator_host: str | None = None):
        self.data_dir = Path(data_dir)
        self.storage = Storage(self.data_dir)
        self.engine = OperationEngine(self.storage, public_url)
        self.gcs = GcsReader(storage_emulator_host)
        self.ingest = Ingest(self.storage, self.gcs)
        self.notifier = Notifier(pubsub_emulator_host)
        self.changes = ChangePublisher(self.storage, self.notifier, self.data_dir)
        self.ingest.listeners.append(self.changes.stored)
        self.public_url = public_url

    def reset(self) -> None:
        self.storage.reset()
        shutil.rmtree(self.data_dir / WAREHOUSE_DIR, ignore_errors=True)

    def close(self) -> None:
        self.engine.shutdown()
        self.ingest.close()
        self.notifier.close()
