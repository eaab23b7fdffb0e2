"""What export operations share: reading the filter file and choosing the instances to export."""

from __future__ import annotations

from ..errors import InvalidArgument, NotFound
from ..names import parse_gcs_uri
from ..store.dicom_store import InstanceRecord, Storage
from .cloud_storage import GcsReader
from .filter_files import ResourceFilter, parse_filter


def load_filter(reader: GcsReader, uri: str | None) -> ResourceFilter | None:
    """Read and parse `filterConfig.resourcePathsGcsUri`; None when no filter was given."""
    if not uri:
        return None
    bucket, name = parse_gcs_uri(uri, "filterConfig.resourcePathsGcsUri")
    from google.api_core import exceptions

    try:
        data = reader.read(bucket, name)
    except exceptions.NotFound:
        raise NotFound(f"filter file {uri} not found") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"filter file {uri} is not UTF-8 text") from None
    return parse_filter(text, uri)


def select_records(storage: Storage, store_id: int, resource_filter: ResourceFilter | None) -> list[InstanceRecord]:
    """The instances an export covers: the whole store, or what the filter names (in index order)."""
    if resource_filter is None:
        return storage.find_instances(store_id)
    selected: list[InstanceRecord] = []
    for study_uid in sorted(resource_filter.study_uids):
        selected += [r for r in storage.find_instances(store_id, study_uid=study_uid)
                     if resource_filter.selects(r.study_uid, r.series_uid, r.sop_uid)]
    return selected
