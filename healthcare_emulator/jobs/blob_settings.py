"""setBlobStorageSettings at store and study level: change the storage class of instances (an Operation)."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..dicom.parsing import first_value
from ..names import DicomStoreName
from ..store.dicom_store import Storage
from .changes import ChangePublisher
from .cloud_storage import GcsReader
from .export_selection import load_filter, select_records
from .notifications import ChangedInstance
from .operations import OperationContext, now_rfc3339

ACTION = "SetBlobSettings"
_CHUNK = 500  # instances per index transaction
TAG_MODALITY = "00080060"


def set_storage_class_job(storage: Storage, gcs: GcsReader, changes: ChangePublisher, store: DicomStoreName,
                          store_id: int, storage_class: str, filter_uri: str | None, study_uid: str | None = None
                          ) -> Callable[[OperationContext], None]:
    """The operation body: the whole store, one study, or what the filter file names (within that study)."""

    def run(context: OperationContext) -> None:
        resource_filter = load_filter(gcs, filter_uri)
        if study_uid is None:
            records = select_records(storage, store_id, resource_filter)
        else:
            records = [r for r in storage.find_instances(store_id, study_uid=study_uid)
                       if resource_filter is None or resource_filter.selects(r.study_uid, r.series_uid, r.sop_uid)]
        context.add(pending=len(records))
        for start in range(0, len(records), _CHUNK):
            context.check_cancelled()
            chunk = records[start:start + _CHUNK]
            previous = {r.sop_uid: r.storage_class for r in chunk}
            changed = storage.set_storage_class(store_id, chunk, storage_class, now_rfc3339())
            context.add(success=len(chunk), pending=-len(chunk))
            if changed:
                instances = [
                    ChangedInstance(r.study_uid, r.series_uid, r.sop_uid,
                                    str(first_value(json.loads(r.metadata), TAG_MODALITY) or ""),
                                    r.storage_class, previous[r.sop_uid])
                    for r in changed
                ]
                changes.changed(str(store), instances, ACTION,
                                    lambda message, resource: context.log("WARNING", message, resource=resource))

    return run
