"""projects.locations.datasets.dicomStores: CRUD, import, export and storage class (LROs)."""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from ...errors import InvalidArgument, NotFound
from ...jobs import bigquery_export, gcs_export
from ...jobs.blob_settings import set_storage_class_job
from ...jobs.cloud_storage import parse_object_pattern
from ...names import DicomStoreName, check_resource_id, check_uid, parse_gcs_uri
from ..http import Request, Response, json_response
from ..schemas import (
    BLOB_STORAGE_CLASSES,
    DICOM_STORE,
    EXPORT_REQUEST,
    IMPORT_REQUEST,
    SET_BLOB_STORAGE_SETTINGS_REQUEST,
    check_fields,
)
from .common import dataset_name, existing_dataset, existing_store, page, store_name, without_empty

if TYPE_CHECKING:
    from ...app import Emulator

_LABEL_KEY = re.compile(r"[^\W\d_A-Z][\w-]{0,62}")
_LABEL_VALUE = re.compile(r"[\w-]{0,63}")
_TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")
_TABLE_URI = re.compile(r"bq://[^.]+\.[^.]+\.[^.]+")
_MUTABLE_FIELDS = ("labels", "notificationConfig", "notificationConfigs", "streamConfigs")
_IMPORT_METHOD = "google.cloud.healthcare.{version}.dicom.DicomService.ImportDicomData"
_EXPORT_METHOD = "google.cloud.healthcare.{version}.dicom.DicomService.ExportDicomData"
_EXPORT_RESPONSE = "type.googleapis.com/google.cloud.healthcare.{version}.dicom.ExportDicomDataResponse"
_BLOB_METHOD = "google.cloud.healthcare.{version}.dicom.DicomService.SetBlobStorageSettings"
_BLOB_RESPONSE = "type.googleapis.com/google.cloud.healthcare.{version}.dicom.SetBlobStorageSettingsResponse"
_IMPORT_RESPONSE = "type.googleapis.com/google.cloud.healthcare.{version}.dicom.ImportDicomDataResponse"


def _validated_store_fields(body: dict[str, Any]) -> dict[str, Any]:
    body = check_fields(body, DICOM_STORE)
    labels = body.get("labels") or {}
    if len(labels) > 64:
        raise InvalidArgument(f"a DICOM store can have at most 64 labels, got {len(labels)}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or key != key.lower():
            raise InvalidArgument(f"invalid label key {key!r}: it must start with a lower-case letter and contain"
                                  " only lower-case letters, digits, '_' and '-' (at most 63 characters)")
        if not _LABEL_VALUE.fullmatch(value) or value != value.lower():
            raise InvalidArgument(f"invalid label value {value!r} for key {key!r}")
    topics = [body.get("notificationConfig", {}).get("pubsubTopic")]
    topics += [c.get("pubsubTopic") for c in body.get("notificationConfigs", [])]
    for topic in topics:
        if topic and not _TOPIC.fullmatch(topic):
            raise InvalidArgument(f"invalid pubsubTopic {topic!r}: expected projects/PROJECT/topics/TOPIC")
    streams = body.get("streamConfigs", [])
    if len(streams) > 5:
        raise InvalidArgument(f"a DICOM store can have at most 5 streamConfigs, got {len(streams)}")
    for stream in streams:
        uri = stream.get("bigqueryDestination", {}).get("tableUri", "")
        if not _TABLE_URI.fullmatch(uri):
            raise InvalidArgument(f"invalid streamConfigs tableUri {uri!r}: expected bq://PROJECT.DATASET.TABLE")
    return body


def _storage_class(body: dict[str, Any]) -> str:
    """blobStorageSettings.blobStorageClass, validated; absent or UNSPECIFIED means STANDARD."""
    storage_class = body.get("blobStorageSettings", {}).get("blobStorageClass") or "STANDARD"
    if storage_class not in BLOB_STORAGE_CLASSES:
        raise InvalidArgument(f"invalid blobStorageClass {storage_class!r}: use one of"
                              f" {', '.join(BLOB_STORAGE_CLASSES)}")
    return "STANDARD" if storage_class == "BLOB_STORAGE_CLASS_UNSPECIFIED" else storage_class


def _render(store: dict[str, Any]) -> dict[str, Any]:
    rendered = without_empty(store)
    if "notificationConfig" in rendered:
        rendered["notificationConfig"] = without_empty(rendered["notificationConfig"])
        if not rendered["notificationConfig"]:
            del rendered["notificationConfig"]
    return rendered


def create(app: Emulator, request: Request, **params: str) -> Response:
    dataset = dataset_name(params)
    existing_dataset(app, dataset)
    store_id = request.param("dicomStoreId")
    if not store_id:
        raise InvalidArgument("dicomStoreId is required")
    check_resource_id(store_id, "DICOM store ID")
    body = _validated_store_fields(request.json())
    name = DicomStoreName(dataset.project, dataset.location, dataset.dataset, store_id)
    store = _render({**{k: body[k] for k in _MUTABLE_FIELDS if k in body}, "name": str(name)})
    app.storage.create_store(str(name), str(dataset), store)
    return json_response(store)


def get(app: Emulator, request: Request, **params: str) -> Response:
    return json_response(existing_store(app, store_name(params))[1])


def list_(app: Emulator, request: Request, **params: str) -> Response:
    dataset = dataset_name(params)
    existing_dataset(app, dataset)
    stores = app.storage.list_stores(str(dataset))
    label_filter = request.param("filter")
    if label_filter:
        match = re.fullmatch(r"\s*labels\.([\w-]+)\s*=\s*\"?([\w-]*)\"?\s*", label_filter)
        if not match:
            raise InvalidArgument(f"unsupported filter {label_filter!r}: only labels.KEY=VALUE is supported")
        key, value = match.groups()
        stores = [s for s in stores if s.get("labels", {}).get(key) == value]
    items, token = page(stores, request.param("pageSize"), request.param("pageToken"))
    return json_response(without_empty({"dicomStores": items, "nextPageToken": token}))


def patch(app: Emulator, request: Request, **params: str) -> Response:
    """dicomStores.patch: apply the fields named by updateMask (comma-separated camelCase paths)."""
    name = store_name(params)
    _, store = existing_store(app, name)
    body = _validated_store_fields(request.json())
    mask = [p.strip() for p in (request.param("updateMask") or "").split(",") if p.strip()]
    if not mask:
        raise InvalidArgument("updateMask is required: name the fields to change, e.g. updateMask=labels")
    updated = copy.deepcopy(store)
    for path in mask:
        top, _, sub = path.partition(".")
        if top not in _MUTABLE_FIELDS or (sub and top != "notificationConfig"):
            raise InvalidArgument(f"updateMask path {path!r} is not a mutable DicomStore field; use one of"
                                  f" {', '.join(_MUTABLE_FIELDS)}")
        if sub:
            if sub not in ("pubsubTopic", "sendForBulkImport"):
                raise InvalidArgument(f"updateMask path {path!r} is not a notificationConfig field")
            target = updated.setdefault("notificationConfig", {})
            source = body.get("notificationConfig", {})
            if sub in source:
                target[sub] = source[sub]
            else:
                target.pop(sub, None)
        elif top in body:
            updated[top] = body[top]
        else:
            updated.pop(top, None)
    updated = _render(updated)
    app.storage.put_store(str(name), updated)
    return json_response(updated)


def delete(app: Emulator, request: Request, **params: str) -> Response:
    name = store_name(params)
    existing_store(app, name)
    app.storage.delete_store(str(name))
    return json_response({})


def import_(app: Emulator, request: Request, **params: str) -> Response:
    """dicomStores.import: returns an Operation at once; objects are read and stored in the background."""
    name = store_name(params)
    store_id, _ = existing_store(app, name)
    body = check_fields(request.json(), IMPORT_REQUEST)
    uri = body.get("gcsSource", {}).get("uri")
    if not uri:
        raise InvalidArgument("gcsSource.uri is required")
    pattern = parse_object_pattern(uri)
    storage_class = _storage_class(body)
    job = app.ingest.import_job(str(name), store_id, pattern, storage_class)
    op = app.engine.start(name.dataset_name, _IMPORT_METHOD.format(version=request.version), job,
                          request.version, _IMPORT_RESPONSE.format(version=request.version), store=str(name))
    return json_response(op)


def export(app: Emulator, request: Request, **params: str) -> Response:
    """dicomStores.export to BigQuery or Cloud Storage: validated here, run as an Operation."""
    name = store_name(params)
    store_id, _ = existing_store(app, name)
    body = check_fields(request.json(), EXPORT_REQUEST)
    gcs_destination, bigquery_destination = body.get("gcsDestination"), body.get("bigqueryDestination")
    if (gcs_destination is None) == (bigquery_destination is None):
        raise InvalidArgument("exactly one of gcsDestination or bigqueryDestination is required")
    filter_uri = body.get("filterConfig", {}).get("resourcePathsGcsUri") or None
    if filter_uri:
        parse_gcs_uri(filter_uri, "filterConfig.resourcePathsGcsUri")
    if bigquery_destination is not None:
        job = bigquery_export.export_job(app.storage, app.gcs, app.data_dir, name, store_id, bigquery_destination,
                                         filter_uri)
        # The Italian seed shows these two values for BigQuery exports.
        method, response_type = _EXPORT_METHOD + "_bq", "type.googleapis.com/google.protobuf.Empty"
    else:
        job = gcs_export.export_job(app.storage, app.gcs, name, store_id, gcs_destination, filter_uri)
        method, response_type = _EXPORT_METHOD, _EXPORT_RESPONSE
    op = app.engine.start(name.dataset_name, method.format(version=request.version), job, request.version,
                          response_type.format(version=request.version), store=str(name))
    return json_response(op)


def set_blob_storage_settings(app: Emulator, request: Request, **params: str) -> Response:
    """dicomStores.setBlobStorageSettings and dicomWeb.studies.setBlobStorageSettings (an Operation)."""
    name = store_name(params)
    store_id, _ = existing_store(app, name)
    study_uid = params.get("study")
    if study_uid is not None:
        check_uid(study_uid, "StudyInstanceUID")
        if not app.storage.find_instances(store_id, study_uid=study_uid):
            raise NotFound(f"{name}/dicomWeb/studies/{study_uid} not found")
    body = check_fields(request.json(), SET_BLOB_STORAGE_SETTINGS_REQUEST)
    storage_class = _storage_class(body)
    filter_uri = body.get("filterConfig", {}).get("resourcePathsGcsUri") or None
    if filter_uri:
        parse_gcs_uri(filter_uri, "filterConfig.resourcePathsGcsUri")
    job = set_storage_class_job(app.storage, app.gcs, app.changes, name, store_id, storage_class, filter_uri, study_uid)
    op = app.engine.start(name.dataset_name, _BLOB_METHOD.format(version=request.version), job,
                          request.version, _BLOB_RESPONSE.format(version=request.version))
    return json_response(op)


def metrics(app: Emulator, request: Request, **params: str) -> Response:
    """dicomStores.getDICOMStoreMetrics: counts and sizes as int64 strings, zeros omitted."""
    name = store_name(params)
    store_id, _ = existing_store(app, name)
    counts = app.storage.store_metrics(store_id)
    return json_response({"name": str(name), **{k: str(v) for k, v in counts.items() if v}})
