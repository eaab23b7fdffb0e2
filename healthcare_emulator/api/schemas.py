"""Known request fields per API message, so unknown names are rejected the way the real API does."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidArgument

# field name -> None (scalar), "map" (string map), a dict (message) or [dict] (repeated message)
Schema = dict[str, Any]

BIGQUERY_DESTINATION: Schema = {
    "tableUri": None, "force": None, "writeDisposition": None, "includeSourceStore": None,
    "schemaFlattened": {}, "schemaJson": {}, "changeDataCaptureConfig": {},
}
DATASET: Schema = {
    "name": None, "timeZone": None, "encryptionSpec": {"kmsKeyName": None},
    "satisfiesPzs": None, "satisfiesPzi": None,
}
DICOM_STORE: Schema = {
    "name": None,
    "labels": "map",
    "notificationConfig": {"pubsubTopic": None, "sendForBulkImport": None},
    "notificationConfigs": [{"pubsubTopic": None, "filter": None}],
    "streamConfigs": [{"bigqueryDestination": BIGQUERY_DESTINATION}],
}
IMPORT_REQUEST: Schema = {
    "gcsSource": {"uri": None},
    "blobStorageSettings": {"blobStorageClass": None},
}

EXPORT_REQUEST: Schema = {
    "gcsDestination": {"uriPrefix": None, "mimeType": None},
    "bigqueryDestination": BIGQUERY_DESTINATION,
    "filterConfig": {"resourcePathsGcsUri": None},
}
SET_BLOB_STORAGE_SETTINGS_REQUEST: Schema = {
    "blobStorageSettings": {"blobStorageClass": None},
    "filterConfig": {"resourcePathsGcsUri": None},
}

BLOB_STORAGE_CLASSES = ("BLOB_STORAGE_CLASS_UNSPECIFIED", "STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def check_fields(body: Any, schema: Schema, at: str = "") -> None:
    """Raise InvalidArgument naming the first unknown field or wrongly-shaped value."""
    where = f" at '{at}'" if at else ""
    if not isinstance(body, dict):
        raise InvalidArgument(f"Invalid JSON payload received. Expected an object{where}")
    for key, value in body.items():
        if key not in schema:
            raise InvalidArgument(f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.')
        kind = schema[key]
        path = f"{at}.{_snake(key)}" if at else _snake(key)
        if kind == "map":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise InvalidArgument(f"Invalid JSON payload received. '{path}' must be a map of strings")
        elif isinstance(kind, dict):
            check_fields(value, kind, path)
        elif isinstance(kind, list):
            if not isinstance(value, list):
                raise InvalidArgument(f"Invalid JSON payload received. '{path}' must be a list")
            for index, item in enumerate(value):
                check_fields(item, kind[0], f"{path}[{index}]")
        elif isinstance(value, (dict, list)):
            raise InvalidArgument(f"Invalid JSON payload received. '{path}' must be a single value")
