"""Where the console's data lives: flags, the local stack's state file, the environment; and the export MIME types."""

from __future__ import annotations

import json

import pytest

from console.backend import ConsoleError, export_mime_type
from console.settings import resolve

STORE = "projects/local-project/locations/europe-west4/datasets/local-dataset/dicomStores/local-store"


def test_the_local_stacks_state_file_says_everything(tmp_path, monkeypatch) -> None:
    for name in ("HEALTHCARE_API_ENDPOINT", "STAGING_BUCKET", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "state.json").write_text(json.dumps({
        "store": STORE, "table": "bq://local-project.dicom_metadata.instances",
        "endpoints": {"healthcare-emulator": "http://127.0.0.1:1234", "warehouse-dir": "/data"},
        "env": {"HEALTHCARE_API_ENDPOINT": "http://127.0.0.1:1234/", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443",
                "HEALTHCARE_EMULATOR_DATA_DIR": "/data"},
        "function_env": {"STAGING_BUCKET": "dicom-staging", "BIGQUERY_TABLE": "bq://local-project.dicom_metadata.instances"},
    }))
    settings = resolve(run_dir=tmp_path)
    assert settings.is_local and settings.endpoint == "http://127.0.0.1:1234"
    assert (settings.project, settings.location, settings.store) == ("local-project", "europe-west4", STORE)
    assert (settings.warehouse_dir, settings.staging_bucket) == ("/data", "dicom-staging")
    assert settings.storage_emulator_host == "http://127.0.0.1:4443"
    assert settings.table == "bq://local-project.dicom_metadata.instances"
    assert settings.healthcare_base == "http://127.0.0.1:1234/v1"

    cloud = resolve(project="my-project", run_dir=tmp_path)  # --project alone: Google Cloud, the stack ignored
    assert not cloud.is_local and cloud.storage_emulator_host is None and cloud.warehouse_dir is None
    assert cloud.healthcare_base == "https://healthcare.googleapis.com/v1" and cloud.location == "us-central1"


def test_without_a_project_or_a_stack_the_error_says_what_to_pass(tmp_path, monkeypatch) -> None:
    for name in ("HEALTHCARE_API_ENDPOINT", "DICOM_STORE", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="pass --project"):
        resolve(run_dir=tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="not the local stack's state file"):
        resolve(run_dir=tmp_path)


@pytest.mark.parametrize(("file_type", "syntax", "mime_type"), [
    ("png", "*", "image/png"),
    ("jpg", "*", "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"),
    ("dcm", "*", "application/dicom; transfer-syntax=*"),
    ("dcm", "1.2.840.10008.1.2.4.90", "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90"),
    ("octet", "1.2.840.10008.1.2.1", "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"),
])
def test_export_file_types_are_the_apis_mime_types(file_type: str, syntax: str, mime_type: str) -> None:
    assert export_mime_type(file_type, syntax) == mime_type


def test_a_transfer_syntax_the_api_does_not_export_is_refused() -> None:
    with pytest.raises(ConsoleError, match="not one the API exports"):
        export_mime_type("dcm", "1.2.3")
    with pytest.raises(ConsoleError, match="raw pixel data"):
        export_mime_type("octet", "1.2.840.10008.1.2.4.50")


def test_the_console_does_not_import_the_emulator_or_the_local_stack() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, console.app, console.server; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('healthcare_emulator', 'local_stack')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"
