"""Helpers shared by the handlers: resource names from path parameters, paging, resource lookups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import InvalidArgument
from ...names import DatasetName, DicomStoreName, LocationName, OperationName

if TYPE_CHECKING:
    from ...app import Emulator

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000


def location_name(params: dict[str, str]) -> LocationName:
    return LocationName(params["project"], params["location"])


def dataset_name(params: dict[str, str]) -> DatasetName:
    return DatasetName(params["project"], params["location"], params["dataset"])


def store_name(params: dict[str, str]) -> DicomStoreName:
    return DicomStoreName(params["project"], params["location"], params["dataset"], params["store"])


def operation_name(params: dict[str, str]) -> OperationName:
    return OperationName(params["project"], params["location"], params["dataset"], params["operation"])


def existing_dataset(app: Emulator, name: DatasetName) -> dict[str, Any]:
    return app.storage.get_dataset(str(name))


def existing_store(app: Emulator, name: DicomStoreName) -> tuple[int, dict[str, Any]]:
    """Return (store id, body); NotFound names the dataset when that is what is missing."""
    existing_dataset(app, name.dataset_name)
    return app.storage.get_store(str(name))


def page(items: list[Any], page_size: str | None, page_token: str | None) -> tuple[list[Any], str | None]:
    """Slice a listing; the page token is the offset of the next page."""
    try:
        size = int(page_size) if page_size else DEFAULT_PAGE_SIZE
    except ValueError:
        raise InvalidArgument(f"invalid pageSize {page_size!r}: it must be an integer") from None
    if size < 0:
        raise InvalidArgument(f"invalid pageSize {size}: it must not be negative")
    size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise InvalidArgument(f"invalid pageToken {page_token!r}") from None
    if start < 0 or start > len(items):
        raise InvalidArgument(f"invalid pageToken {page_token!r}")
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def without_empty(value: dict[str, Any]) -> dict[str, Any]:
    """Drop fields with default values, as proto3 JSON does in server responses."""
    return {k: v for k, v in value.items() if v not in (None, "", [], {}, False, 0)}
