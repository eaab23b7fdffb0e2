"""projects.locations.datasets.operations: get, list, cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import Request, Response, json_response
from .common import dataset_name, existing_dataset, operation_name, page, without_empty

if TYPE_CHECKING:
    from ...app import Emulator


def get(app: Emulator, request: Request, **params: str) -> Response:
    return json_response(app.engine.get(str(operation_name(params))))


def list_(app: Emulator, request: Request, **params: str) -> Response:
    """operations.list; `filter` is accepted and ignored (gcloud filters client-side)."""
    dataset = dataset_name(params)
    existing_dataset(app, dataset)
    items, token = page(app.engine.list(dataset), request.param("pageSize"), request.param("pageToken"))
    return json_response(without_empty({"operations": items, "nextPageToken": token}))


def cancel(app: Emulator, request: Request, **params: str) -> Response:
    app.engine.cancel(str(operation_name(params)))
    return json_response({})
