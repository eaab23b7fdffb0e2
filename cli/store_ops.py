"""Commands that start an operation on a DICOM store: import, export bq|gcs, storage-class."""

from __future__ import annotations

import argparse
from typing import Any

from dicom_pipeline import healthcare
from dicom_pipeline.errors import classify
from dicom_pipeline.names import BigQueryTableUri, DicomStoreName, GcsUri

from .common import UsageError, endpoint
from .operations import started

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")


def cmd_import(args: argparse.Namespace) -> int:
    try:
        store = DicomStoreName.from_string(args.store)
        source = GcsUri.from_string(args.source)
    except ValueError as exc:
        raise UsageError(f"{exc}; e.g. dicom-pipeline import projects/P/locations/L/datasets/D/dicomStores/S"
                         " 'gs://bucket/dir/**.dcm'") from exc
    operation = healthcare.import_dicom(endpoint(args), store, source, args.storage_class)
    return started(args, operation, "file")


def _filter_config(args: argparse.Namespace) -> dict[str, Any]:
    if not args.filter_config_gcs_uri:
        return {}
    return {"filterConfig": {"resourcePathsGcsUri": str(GcsUri.from_string(args.filter_config_gcs_uri))}}


def cmd_export_bq(args: argparse.Namespace) -> int:
    try:
        store = DicomStoreName.from_string(args.store)
        table = BigQueryTableUri.from_string(args.table)
        filter_config = _filter_config(args)
    except ValueError as exc:
        raise UsageError(f"{exc}; e.g. dicom-pipeline export bq STORE bq://project.dataset.table"
                         " [--filter-config-gcs-uri gs://bucket/filter.txt]") from exc
    if args.write_disposition and args.overwrite_table:
        raise UsageError("--overwrite-table is the legacy form of --write-disposition WRITE_TRUNCATE; give one")
    destination: dict[str, Any] = {"tableUri": str(table)}
    if args.write_disposition:
        destination["writeDisposition"] = args.write_disposition
    elif args.overwrite_table:
        destination["force"] = True
    return _export(args, store, {"bigqueryDestination": destination, **filter_config})


def cmd_export_gcs(args: argparse.Namespace) -> int:
    try:
        store = DicomStoreName.from_string(args.store)
        if not args.prefix.startswith("gs://"):
            raise ValueError("expected gs://BUCKET/PREFIX")
        filter_config = _filter_config(args)
    except ValueError as exc:
        raise UsageError(f"{exc}; e.g. dicom-pipeline export gcs STORE gs://bucket/exports"
                         " [--mime-type 'application/dicom; transfer-syntax=*']") from exc
    destination: dict[str, Any] = {"uriPrefix": args.prefix}
    if args.mime_type:
        destination["mimeType"] = args.mime_type
    return _export(args, store, {"gcsDestination": destination, **filter_config})


def _export(args: argparse.Namespace, store: DicomStoreName, body: dict[str, Any]) -> int:
    return _start(args, "export", name=str(store), body=body)


def _start(args: argparse.Namespace, method: str, **params: Any) -> int:
    """Call a long-running dicomStores method and follow the operation it returns."""
    stores = healthcare.dicom_stores(endpoint(args))
    try:
        operation = getattr(stores, method)(**params).execute(num_retries=0)
    except Exception as exc:
        raise classify(exc, f"dicomStores.{method}") from exc
    return started(args, operation, "instance")


def cmd_storage_class(args: argparse.Namespace) -> int:
    """dicomStores.setBlobStorageSettings for the instances a filter file names (or, explicitly, the whole store)."""
    try:
        store = DicomStoreName.from_string(args.store)
        filter_config = _filter_config(args)
    except ValueError as exc:
        raise UsageError(f"{exc}; e.g. dicom-pipeline storage-class STORE ARCHIVE"
                         " --filter-config-gcs-uri gs://bucket/old-studies.txt") from exc
    # Without a filter the API changes every instance in the store: make that a deliberate choice.
    if bool(filter_config) == args.whole_store:
        raise UsageError("give exactly one of --filter-config-gcs-uri gs://BUCKET/FILTER (the instances it names)"
                         " or --whole-store (every instance in the store)")
    body = {"blobStorageSettings": {"blobStorageClass": args.storage_class}, **filter_config}
    return _start(args, "setBlobStorageSettings", resource=str(store), body=body)
