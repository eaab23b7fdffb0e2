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


def check_fields(body: Any, schema: Schema, at: str = "") -> dict[str, Any]:
    """The body with every field under its lowerCamelCase name; InvalidArgument names the first unknown
    field or wrongly-shaped value.

    proto3's JSON mapping makes parsers accept a field's original name (`blob_storage_settings`) as well
    as its JSON name (`blobStorageSettings`); the handlers then read the JSON names only.
    """
    where = f" at '{at}'" if at else ""
    if not isinstance(body, dict):
        raise InvalidArgument(f"Invalid JSON payload received. Expected an object{where}")
    normalized: dict[str, Any] = {}
    for key, value in body.items():
        name = key if key in schema else _original_names(schema).get(key)
        if name is None:
            raise InvalidArgument(f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.')
        path = f"{at}.{_snake(name)}" if at else _snake(name)
        if name in normalized:
            raise InvalidArgument(f"Invalid JSON payload received. Field '{path}' is given twice"
                                  f" (as \"{name}\" and \"{_snake(name)}\")")
        kind = schema[name]
        if kind == "map":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise InvalidArgument(f"Invalid JSON payload received. '{path}' must be a map of strings")
        elif isinstance(kind, dict):
            value = check_fields(value, kind, path)
        elif isinstance(kind, list):
            if not isinstance(value, list):
                raise InvalidArgument(f"Invalid JSON payload received. '{path}' must be a list")
            value = [check_fields(item, kind[0], f"{path}[{index}]") for index, item in enumerate(value)]
        elif isinstance(value, (dict, list)):
            raise InvalidArgument(f"Invalid JSON payload received. '{path}' must be a single value")
        normalized[name] = value
    return normalized


def _original_names(schema: Schema) -> dict[str, str]:
    """original proto field name (snake_case) -> JSON name, for the names that differ."""
    return {_snake(name): name for name in schema if _snake(name) != name}
