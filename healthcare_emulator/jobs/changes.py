"""What follows a stored or changed instance: Pub/Sub notifications and streaming to BigQuery (streamConfigs)."""

from __future__ import annotations

from pathlib import Path

from ..dicom.parsing import first_value
from ..errors import ApiError
from ..store.dicom_store import Storage
from .bigquery_export import append_instances
from .ingest import Problem, StoreResult
from .notifications import ChangedInstance, Notifier

TAG_MODALITY = "00080060"


class ChangePublisher:
    """Tells a store's notification topics and stream tables about instances stored or changed."""

    def __init__(self, storage: Storage, notifier: Notifier, data_dir: Path) -> None:
        self.storage = storage
        self.notifier = notifier
        self.data_dir = data_dir  # the warehouse behind the stream tables lives under it

    def stored(self, store_name: str, results: list[StoreResult], action: str, problem: Problem) -> None:
        """The ingest listener: instances just stored by STOW or import."""
        changed = [ChangedInstance(r.parsed.study_uid, r.parsed.series_uid, r.parsed.sop_uid,
                                   str(first_value(r.parsed.metadata, TAG_MODALITY) or ""), r.storage_class)
                   for r in results]
        self.changed(store_name, changed, action, problem)

    def changed(self, store_name: str, instances: list[ChangedInstance], action: str, problem: Problem) -> None:
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
                append_instances(self.data_dir, table_uri, store_name, records,
                                 bool(destination.get("includeSourceStore")), json_schema="schemaJson" in destination)
            except ApiError as exc:  # streaming problems never undo the store (the real API logs them)
                problem(f"could not stream to {table_uri}: {exc.message}", store_name)
