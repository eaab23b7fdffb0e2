"""PERMISSION_DENIED → the IAM role each command needs, so an operator sees the fix instead of a bare 403.

Facts: shared/reference/healthcare-api.md §4 (service agent roles for import and both exports) and the
API reference (setBlobStorageSettings needs healthcare.dicomStores.dicomWebWrite, in roles/healthcare.dicomEditor).
"""

from __future__ import annotations

from typing import Any

from dicom_pipeline.errors import http_status

SERVICE_AGENT = "the Cloud Healthcare Service Agent (service-PROJECT_NUMBER@gcp-sa-healthcare.iam.gserviceaccount.com)"
_FILTER = f"; with --filter-config-gcs-uri {SERVICE_AGENT} also needs roles/storage.objectViewer on the filter's bucket"

ROLE_HINTS: dict[str, str] = {
    "import": ("your account needs roles/healthcare.dicomEditor on the DICOM store, and " + SERVICE_AGENT
               + " needs roles/storage.objectViewer on the source bucket"),
    "export-bq": ("your account needs roles/healthcare.dicomEditor on the DICOM store, and " + SERVICE_AGENT
                  + " needs roles/bigquery.dataEditor and roles/bigquery.jobUser on the destination (a BigQuery"
                  " dataset in the store's project)" + _FILTER),
    "export-gcs": ("your account needs roles/healthcare.dicomEditor on the DICOM store, and " + SERVICE_AGENT
                   + " needs roles/storage.objectAdmin on the destination bucket" + _FILTER),
    "storage-class": ("your account needs roles/healthcare.dicomEditor on the DICOM store"
                      " (healthcare.dicomStores.dicomWebWrite)" + _FILTER),
    "operations": "your account needs roles/healthcare.datasetViewer on the dataset (healthcare.operations.get/list)",
    "query": ("your account needs roles/bigquery.jobUser on the project the query runs in and"
              " roles/bigquery.dataViewer on the queried dataset"),
    "filter-build": ("your account needs roles/bigquery.jobUser on the project the query runs in,"
                     " roles/bigquery.dataViewer on the queried dataset and roles/storage.objectCreator on the"
                     " output bucket"),
    "filter-validate": "your account needs roles/storage.objectViewer on the filter file's bucket",
    "dead-letters": "your account needs roles/storage.objectAdmin on the staging bucket (dead-letter/ records)",
    "dead-letters-requeue": ("your account needs roles/storage.objectAdmin on the staging bucket and on the upload"
                             " bucket (an import is requeued by rewriting its object), roles/healthcare.dicomViewer"
                             " on the store (its notification topic) and roles/pubsub.publisher on that topic"),
}

PERMISSION_DENIED_RPC_CODE = 7  # google.rpc.Code in a finished operation's `error`


def is_permission_denied(exc: BaseException) -> bool:
    """HTTP 403 from any Google client (googleapiclient HttpError, google.api_core Forbidden), also when wrapped."""
    return http_status(exc) == 403 or "PERMISSION_DENIED" in str(exc)


def operation_permission_denied(operation: dict[str, Any]) -> bool:
    """An operation that failed because the service agent lacked a role (it runs as the agent, not as you)."""
    error = operation.get("error") or {}
    return int(error.get("code", 0) or 0) == PERMISSION_DENIED_RPC_CODE


def role_hint(command: str) -> str:
    return ROLE_HINTS.get(command, "grant your account the role that allows this call, then retry")


def permission_message(command: str, exc: BaseException) -> str:
    """One line: what was denied, then which roles fix it."""
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return f"permission denied: {detail}; fix: {role_hint(command)}"
