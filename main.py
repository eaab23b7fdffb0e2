"""Deploy entry point: the two Cloud Functions, re-exported."""

from handlers.bigquery_export import export_dicom_metadata
from handlers.storage_import import import_dicom_object

__all__ = ["export_dicom_metadata", "import_dicom_object"]
