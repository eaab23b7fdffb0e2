"""Resource names as small validated value objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = r"[A-Za-z0-9_.\-]+"
_STORE = re.compile(rf"projects/({_ID})/locations/({_ID})/datasets/({_ID})/dicomStores/({_ID})")
_INSTANCE = re.compile(rf"({_STORE.pattern})/dicomWeb/studies/([0-9.]+)/series/([0-9.]+)/instances/([0-9.]+)")
_TABLE = re.compile(r"bq://((?:[\w\-.]+:)?[\w\-.]+)\.(\w+)\.([\w\-]+)")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# Characters dicomStores.import reads as a pattern in gs:// object names.
WILDCARD_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class DicomStoreName:
    project: str
    location: str
    dataset: str
    store: str

    @classmethod
    def from_string(cls, value: str) -> DicomStoreName:
        match = _STORE.fullmatch(value.strip().strip("/"))
        if not match:
            raise ValueError("expected projects/P/locations/L/datasets/D/dicomStores/S")
        return cls(*match.groups())

    @property
    def dataset_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"

    def __str__(self) -> str:
        return f"{self.dataset_name}/dicomStores/{self.store}"


@dataclass(frozen=True)
class GcsUri:
    bucket: str
    name: str

    @classmethod
    def from_string(cls, value: str) -> GcsUri:
        if not value.startswith("gs://") or "/" not in value[5:]:
            raise ValueError("expected gs://BUCKET/OBJECT")
        bucket, name = value[5:].split("/", 1)
        if not bucket or not name:
            raise ValueError("expected gs://BUCKET/OBJECT")
        return cls(bucket, name)

    @property
    def has_wildcard(self) -> bool:
        return any(c in WILDCARD_CHARACTERS for c in self.name)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@dataclass(frozen=True)
class BigQueryTableUri:
    project: str
    dataset: str
    table: str

    @classmethod
    def from_string(cls, value: str) -> BigQueryTableUri:
        match = _TABLE.fullmatch(value.strip())
        if not match:
            raise ValueError("expected bq://PROJECT.DATASET.TABLE")
        return cls(*match.groups())

    def __str__(self) -> str:
        return f"bq://{self.project}.{self.dataset}.{self.table}"


@dataclass(frozen=True)
class InstancePath:
    """One instance, as named in a DICOM store notification's data."""

    store: DicomStoreName
    study_uid: str
    series_uid: str
    sop_uid: str

    @classmethod
    def from_string(cls, value: str) -> InstancePath:
        match = _INSTANCE.fullmatch(value.strip())
        if not match:
            raise ValueError("expected projects/…/dicomStores/S/dicomWeb/studies/U/series/U/instances/U")
        groups = match.groups()
        return cls(DicomStoreName(*groups[1:5]), *groups[5:8])

    @property
    def filter_line(self) -> str:
        """The line of a filterConfig resource-paths file that selects exactly this instance."""
        return f"/studies/{self.study_uid}/series/{self.series_uid}/instances/{self.sop_uid}"

    def __str__(self) -> str:
        return f"{self.store}/dicomWeb{self.filter_line}"


def filter_line(resource_path: str) -> str:
    """Validate an operator-given resource path (/studies/S[/series/SE[/instances/I]]) and normalise it."""
    parts = resource_path.strip().strip("/").split("/")
    if parts and parts[0] == "dicomWeb":
        parts = parts[1:]
    keys = ("studies", "series", "instances")
    if not parts or len(parts) % 2 or len(parts) > 6:
        raise ValueError(f"resource path {resource_path!r} is not /studies/S[/series/SE[/instances/I]]")
    for i in range(0, len(parts), 2):
        if parts[i] != keys[i // 2] or not _UID.fullmatch(parts[i + 1]):
            raise ValueError(f"resource path {resource_path!r} is not /studies/S[/series/SE[/instances/I]]")
    return "/" + "/".join(parts)
