"""The core's pure parts: settings, names, event parsing, error classification, log format."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys

import httplib2
import pytest
from googleapiclient.errors import HttpError

from dicom_pipeline import events, logs
from dicom_pipeline.config import Settings
from dicom_pipeline.errors import ConfigError, PermanentError, TransientError, classify, classify_operation_error
from dicom_pipeline.names import BigQueryTableUri, DicomStoreName, GcsUri, InstancePath, filter_line

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
        settings.staging_bucket = "x"  # type: ignore[misc]


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


def test_names() -> None:
    path = InstancePath.from_string(f"{STORE}/dicomWeb/studies/1.2/series/1.2.3/instances/1.2.3.4")
    assert path.store == DicomStoreName.from_string(STORE)
    assert path.filter_line == "/studies/1.2/series/1.2.3/instances/1.2.3.4"
    assert str(path).startswith(STORE)
    assert str(BigQueryTableUri.from_string("bq://example.com:p.d.t")) == "bq://example.com:p.d.t"
    assert GcsUri.from_string("gs://b/a*b.dcm").has_wildcard and not GcsUri.from_string("gs://b/a.dcm").has_wildcard
    assert filter_line("studies/1.2/series/3") == "/studies/1.2/series/3"
    for bad in ("/studies/x", "/series/1", "/studies/1/instances/2", ""):
        with pytest.raises(ValueError):
            filter_line(bad)


def test_storage_data_accepts_string_and_number_sizes() -> None:
    assert events.storage_object({"bucket": "b", "name": "n", "size": "12"}).size == 12
    assert events.storage_object({"bucket": "b", "name": "n", "size": 12, "generation": 5}).generation == "5"
    with pytest.raises(PermanentError, match="size"):
        events.storage_object({"bucket": "b", "name": "n", "size": "big"})
    with pytest.raises(PermanentError, match="bucket or name"):
        events.storage_object({"name": "n"})


def test_pubsub_message_parsing() -> None:
    data = {"message": {"data": base64.b64encode(b"hello").decode(), "messageId": "42", "attributes": {"a": 1}}}
    message = events.pubsub_message(data, "ev")
    assert (message.data, message.message_id, message.attributes) == (b"hello", "42", {"a": "1"})
    for bad, reason in [({}, "no message"), ({"message": {"data": "%%%"}}, "base64"),
                        ({"message": {"data": 5}}, "base64"), ("x", "no message")]:
        with pytest.raises(PermanentError, match=reason):
            events.pubsub_message(bad, "ev")


def _http_error(status: int) -> HttpError:
    return HttpError(httplib2.Response({"status": status}), b'{"error": {"message": "m"}}')


@pytest.mark.parametrize(("status", "kind"), [(429, TransientError), (500, TransientError), (503, TransientError),
                                              (403, TransientError), (400, PermanentError), (422, PermanentError)])
def test_http_errors_are_classified(status, kind) -> None:
    assert type(classify(_http_error(status), "call")) is kind


def test_other_errors_are_classified() -> None:
    assert isinstance(classify(TimeoutError("t"), "x"), TransientError)
    assert isinstance(classify(ConnectionRefusedError("c"), "x"), TransientError)
    assert isinstance(classify_operation_error({"code": 6, "message": "exists"}, "x"), PermanentError)
    assert isinstance(classify_operation_error({"code": 14}, "x"), TransientError)


def test_log_lines_are_json_and_refuse_unknown_fields(capsys) -> None:
    logs.configure()
    logs.log(logging.ERROR, "boom", event_id="e1", object="gs://b/o", operation="op")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["severity"] == "ERROR" and line["event_id"] == "e1" and line["operation"] == "op"
    with pytest.raises(ValueError, match="PatientName"):
        logs.log(logging.INFO, "x", PatientName="Doe^John")


def test_importing_main_does_no_network_or_credential_work() -> None:
    code = ("import socket, sys\n"
            "def refuse(*a, **k): raise AssertionError('network at import time')\n"
            "socket.socket.connect = refuse\n"
            "import google.auth\n"
            "google.auth.default = refuse\n"
            "import main\n"
            "assert 'googleapiclient.discovery' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=__file__.rsplit("/tests/", 1)[0], env={})
