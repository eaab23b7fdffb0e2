"""Per-resource metrics under dicomWeb: studies.getStudyMetrics, series.getSeriesMetrics, instances.getStorageInfo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import NotFound
from ...names import check_uid
from ...store.dicom_store import InstanceRecord
from ..http import Request, Response, json_response
from .common import existing_store, store_name

if TYPE_CHECKING:
    from ...app import Emulator


def _records(app: Emulator, params: dict[str, str], **uids: str) -> tuple[str, list[InstanceRecord]]:
    name = store_name(params)
    store_id, _ = existing_store(app, name)
    for what, uid in uids.items():
        check_uid(uid, what.replace("_", " "))
    records = app.storage.find_instances(store_id, **uids)
    path = "/".join(f"{level}/{uid}" for level, uid in zip(("studies", "series", "instances"), uids.values(),
                                                            strict=False))
    resource = f"{name}/dicomWeb/{path}"
    if not records:
        raise NotFound(f"{resource} not found")
    return resource, records


def _sizes(records: list[InstanceRecord]) -> dict[str, str]:
    return {
        "instanceCount": str(len(records)),
        "structuredStorageSizeBytes": str(sum(r.metadata_size for r in records)),
        "blobStorageSizeBytes": str(sum(r.size for r in records)),
    }


def study_metrics(app: Emulator, request: Request, **params: str) -> Response:
    resource, records = _records(app, params, study_uid=params["study"])
    series_count = len({r.series_uid for r in records})
    return json_response({"study": resource, "seriesCount": str(series_count), **_sizes(records)})


def series_metrics(app: Emulator, request: Request, **params: str) -> Response:
    resource, records = _records(app, params, study_uid=params["study"], series_uid=params["series"])
    return json_response({"series": resource, **_sizes(records)})


def storage_info(app: Emulator, request: Request, **params: str) -> Response:
    resource, records = _records(app, params, study_uid=params["study"], series_uid=params["series"],
                                 sop_uid=params["instance"])
    record = records[0]
    info: dict[str, Any] = {
        "referencedResource": resource,
        "blobStorageInfo": {"sizeBytes": str(record.size), "storageClass": record.storage_class,
                            "storageClassUpdateTime": record.update_time},
        "structuredStorageInfo": {"sizeBytes": str(record.metadata_size)},
    }
    return json_response(info)
