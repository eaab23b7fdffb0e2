"""Resource names of the Cloud Healthcare API, parsed and validated."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidArgument

# Real API: datasetId / dicomStoreId match [\p{L}\p{N}_\-\.]{1,256}; \w is Python's letters, digits, "_".
_RESOURCE_ID = re.compile(r"[\w\-.]{1,256}")
_PROJECT_ID = re.compile(r"[a-z0-9][a-z0-9.\-_]{0,62}")
_LOCATION_ID = re.compile(r"[a-z0-9][a-z0-9\-]{0,62}")
_OPERATION_ID = re.compile(r"[0-9]{1,30}")
# A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters.
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value) or value in (".", ".."):
        raise InvalidArgument(f"invalid {what} {value!r}: it must match {pattern.pattern}")
    return value


def check_resource_id(value: str, what: str) -> str:
    return _check(_RESOURCE_ID, value, what)


def check_uid(value: str, what: str = "UID") -> str:
    if len(value) > 64:
        raise InvalidArgument(f"invalid {what} {value!r}: longer than 64 characters")
    return _check(_UID, value, what)


def is_valid_uid(value: str) -> bool:
    return len(value) <= 64 and bool(_UID.fullmatch(value))


@dataclass(frozen=True)
class LocationName:
    project: str
    location: str

    def __post_init__(self) -> None:
        _check(_PROJECT_ID, self.project, "project ID")
        _check(_LOCATION_ID, self.location, "location ID")

    def __str__(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


@dataclass(frozen=True)
class DatasetName:
    project: str
    location: str
    dataset: str

    def __post_init__(self) -> None:
        LocationName(self.project, self.location)
        check_resource_id(self.dataset, "dataset ID")

    @property
    def parent(self) -> LocationName:
        return LocationName(self.project, self.location)

    def __str__(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"


@dataclass(frozen=True)
class DicomStoreName:
    project: str
    location: str
    dataset: str
    store: str

    def __post_init__(self) -> None:
        DatasetName(self.project, self.location, self.dataset)
        check_resource_id(self.store, "DICOM store ID")

    @property
    def dataset_name(self) -> DatasetName:
        return DatasetName(self.project, self.location, self.dataset)

    def __str__(self) -> str:
        return f"{self.dataset_name}/dicomStores/{self.store}"


@dataclass(frozen=True)
class OperationName:
    project: str
    location: str
    dataset: str
    operation: str

    def __post_init__(self) -> None:
        DatasetName(self.project, self.location, self.dataset)
        _check(_OPERATION_ID, self.operation, "operation ID")

    @property
    def dataset_name(self) -> DatasetName:
        return DatasetName(self.project, self.location, self.dataset)

    def __str__(self) -> str:
        return f"{self.dataset_name}/operations/{self.operation}"


_GCS_URI = re.compile(r"gs://([a-z0-9][a-z0-9._\-]{1,220}[a-z0-9])/(.*)", re.DOTALL)


def parse_gcs_uri(uri: str, what: str) -> tuple[str, str]:
    """Split gs://bucket/object into (bucket, object); the object may be empty."""
    match = _GCS_URI.fullmatch(uri or "")
    if not match:
        raise InvalidArgument(f"{what} {uri!r} is not a Cloud Storage URI of the form gs://BUCKET/OBJECT")
    return match.group(1), match.group(2)
