"""projects.locations.datasets: create (LRO), get, list, patch, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import InvalidArgument
from ...names import DatasetName, check_resource_id
from ..http import Request, Response, json_response
from ..schemas import DATASET, check_fields
from .common import dataset_name, existing_dataset, location_name, page, without_empty

if TYPE_CHECKING:
    from ...app import Emulator

_DATASET_TYPE = "type.googleapis.com/google.cloud.healthcare.{version}.dataset.Dataset"


def create(app: Emulator, request: Request, **params: str) -> Response:
    """datasets.create: the dataset exists at once; the returned Operation is already done."""
    parent = location_name(params)
    dataset_id = request.param("datasetId")
    if not dataset_id:
        raise InvalidArgument("datasetId is required")
    check_resource_id(dataset_id, "dataset ID")
    body = check_fields(request.json(), DATASET)
    name = DatasetName(parent.project, parent.location, dataset_id)
    dataset = without_empty({"name": str(name), "timeZone": body.get("timeZone"),
                             "encryptionSpec": body.get("encryptionSpec")})
    app.storage.create_dataset(str(name), str(parent), dataset)
    op = app.engine.record_done(name, "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset",
                                request.version, {"@type": _DATASET_TYPE.format(version=request.version),
                                                  **dataset})
    return json_response(op)


def get(app: Emulator, request: Request, **params: str) -> Response:
    return json_response(existing_dataset(app, dataset_name(params)))


def list_(app: Emulator, request: Request, **params: str) -> Response:
    items, token = page(app.storage.list_datasets(str(location_name(params))),
                        request.param("pageSize"), request.param("pageToken"))
    return json_response(without_empty({"datasets": items, "nextPageToken": token}))


def patch(app: Emulator, request: Request, **params: str) -> Response:
    name = dataset_name(params)
    dataset = existing_dataset(app, name)
    body = check_fields(request.json(), DATASET)
    for path in (request.param("updateMask") or "").split(","):
        if path.strip() == "timeZone":
            dataset["timeZone"] = body.get("timeZone", "")
        elif path.strip():
            raise InvalidArgument(f"updateMask path {path.strip()!r} is not supported: only timeZone can change")
    dataset = without_empty(dataset)
    app.storage.put_dataset(str(name), dataset)
    return json_response(dataset)


def delete(app: Emulator, request: Request, **params: str) -> Response:
    app.storage.delete_dataset(str(dataset_name(params)))
    return json_response({})
