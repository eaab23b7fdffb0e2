"""PERMISSION_DENIED → the IAM role each command needs, so an operator sees the fix instead of a bare 403.

The roles come from terraform/iam_table.toml ([[cli]] rows), the same table tests/terraform/test_iam_table.py
checks against Google's role contents and the Terraform grants.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from dicom_pipeline.errors import http_status

IAM_TABLE = Path(__file__).resolve().parents[1] / "terraform" / "iam_table.toml"
SERVICE_AGENT = "the Cloud Healthcare Service Agent (service-PROJECT_NUMBER@gcp-sa-healthcare.iam.gserviceaccount.com)"
_FILTER = f"; with --filter-config-gcs-uri {SERVICE_AGENT} also needs roles/storage.objectViewer on the filter's bucket"
_WHO = {"you": "your account", "agent": SERVICE_AGENT}
GENERIC_HINT = "grant your account the role that allows this call, then retry"


def _hint(row: dict[str, Any]) -> str:
    parts = []
    for who, subject in _WHO.items():
        needs = [f"{n['role']} on {n['where']} ({n['permission']})" for n in row["needs"] if n["who"] == who]
        if needs:
            parts.append(f"{subject} needs {' and '.join(needs)}")
    return ", and ".join(parts) + (_FILTER if row.get("filter") else "")


@cache
def role_hints() -> dict[str, str]:
    """command → hint; empty when the table is not there (an install without the repository's terraform/)."""
    if not IAM_TABLE.exists():
        return {}
    with IAM_TABLE.open("rb") as f:
        return {row["command"]: _hint(row) for row in tomllib.load(f).get("cli", [])}


PERMISSION_DENIED_RPC_CODE = 7  # google.rpc.Code in a finished operation's `error`


def is_permission_denied(exc: BaseException) -> bool:
    """HTTP 403 from any Google client (googleapiclient HttpError, google.api_core Forbidden), also when wrapped."""
    return http_status(exc) == 403 or "PERMISSION_DENIED" in str(exc)


def operation_permission_denied(operation: dict[str, Any]) -> bool:
    """An operation that failed because the service agent lacked a role (it runs as the agent, not as you)."""
    error = operation.get("error") or {}
    return int(error.get("code", 0) or 0) == PERMISSION_DENIED_RPC_CODE


def role_hint(command: str) -> str:
    return role_hints().get(command, GENERIC_HINT)


def permission_message(command: str, exc: BaseException) -> str:
    """One line: what was denied, then which roles fix it."""
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return f"permission denied: {detail}; fix: {role_hint(command)}"
