"""Settings (dicom_pipeline.config): read from the environment at call time, bad values named."""

from __future__ import annotations

import pytest

from dicom_pipeline.config import Settings
from dicom_pipeline.errors import ConfigError
from dicom_pipeline.names import DicomStoreName

STORE = "projects/p/locations/l/datasets/d/dicomStores/s"
BASE = {"DICOM_STORE": STORE, "STAGING_BUCKET": "staging"}


def test_settings_defaults_and_overrides() -> None:
    settings = Settings.from_env({**BASE, "IMPORT_SUFFIXES": ".DCM,.dicom", "IMPORT_STORAGE_CLASS": "nearline",
                                  "OPERATION_WAIT_SECONDS": "2.5", "HEALTHCARE_API_ENDPOINT": "http://h:1/"})
    assert settings.dicom_store == DicomStoreName("p", "l", "d", "s")
    assert settings.import_suffixes == (".dcm", ".dicom")
    assert settings.import_storage_class == "NEARLINE"
    assert settings.operation_wait_seconds == 2.5
    assert settings.healthcare_api_endpoint == "http://h:1"
    assert Settings.from_env(BASE).write_disposition == "WRITE_APPEND"
    assert (Settings.from_env(BASE).export_batch_window, Settings.from_env(BASE).export_batch_max) == (0.25, 500)
    batched = Settings.from_env({**BASE, "EXPORT_BATCH_WINDOW_SECONDS": "0", "EXPORT_BATCH_MAX_INSTANCES": "50"})
    assert (batched.export_batch_window, batched.export_batch_max) == (0.0, 50)
    with pytest.raises(AttributeError):
        settings.staging_bucket = "x"


@pytest.mark.parametrize(("env", "named"), [
    ({"STAGING_BUCKET": "b"}, "DICOM_STORE"),
    ({"DICOM_STORE": STORE}, "STAGING_BUCKET"),
    ({**BASE, "DICOM_STORE": "stores/s"}, "DICOM_STORE"),
    ({**BASE, "OPERATION_WAIT_SECONDS": "soon"}, "OPERATION_WAIT_SECONDS"),
    ({**BASE, "IMPORT_STORAGE_CLASS": "COLD"}, "IMPORT_STORAGE_CLASS"),
    ({**BASE, "BIGQUERY_TABLE": "p.d.t"}, "BIGQUERY_TABLE"),
    ({**BASE, "EXPORT_WRITE_DISPOSITION": "APPEND"}, "EXPORT_WRITE_DISPOSITION"),
    ({**BASE, "HEALTHCARE_API_ENDPOINT": "localhost:1"}, "HEALTHCARE_API_ENDPOINT"),
    ({**BASE, "EXPORT_BATCH_WINDOW_SECONDS": "-1"}, "EXPORT_BATCH_WINDOW_SECONDS"),
    ({**BASE, "EXPORT_BATCH_MAX_INSTANCES": "lots"}, "EXPORT_BATCH_MAX_INSTANCES"),
    ({**BASE, "LOGGING_API_ENDPOINT": "127.0.0.1:8080"}, "LOGGING_API_ENDPOINT"),
    ({**BASE, "HEALTHCARE_LOG_VIEW": "projects/p/views/v"}, "HEALTHCARE_LOG_VIEW"),
    ({**BASE, "OPERATION_LOG_WAIT_SECONDS": "-3"}, "OPERATION_LOG_WAIT_SECONDS"),
])
def test_bad_settings_name_the_variable(env, named) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_settings_read_at_call_time(monkeypatch) -> None:
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPERATION_WAIT_SECONDS", "1")
    assert Settings.from_env().operation_wait_seconds == 1
    monkeypatch.setenv("OPERATION_WAIT_SECONDS", "7")
    assert Settings.from_env().operation_wait_seconds == 7
