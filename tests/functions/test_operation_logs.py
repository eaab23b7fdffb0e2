"""The reason a file failed, read from Cloud Logging by the functions: through a log view, within the wait
bound, and the fallback to the operation log's link (saying why) when Logging has nothing or cannot be read."""

from __future__ import annotations

import pytest

from dicom_samples import synthetic_instance
from main import import_dicom_object

pytestmark = pytest.mark.integration


def _broken(pipeline, name: str):
    data = synthetic_instance().data
    return pipeline.upload(name, data[: len(data) // 2])  # a preamble, then a cut-short element


def test_the_reason_is_read_through_the_log_view(pipeline, monkeypatch) -> None:
    project = pipeline.store.name.split("/")[1]
    monkeypatch.setenv("HEALTHCARE_LOG_VIEW", f"projects/{project}/locations/global/buckets/_Default/views/hc")

    assert import_dicom_object(_broken(pipeline, "view/half.dcm")) is None

    (letter,) = pipeline.dead_letters("import")
    (reason,) = letter["reasons"]
    assert reason["source"] == letter["object"] and "cut short" in reason["message"]
    assert letter["reason"] == f"import of {letter['object']} failed: {reason['message']} (code 3)"


def test_no_entry_within_the_wait_falls_back_to_the_link_saying_so(pipeline, monkeypatch) -> None:
    # A view of another project: Logging answers, with nothing for this operation.
    monkeypatch.setenv("HEALTHCARE_LOG_VIEW", "projects/elsewhere/locations/global/buckets/_Default/views/hc")
    monkeypatch.setenv("OPERATION_LOG_WAIT_SECONDS", "1")

    assert import_dicom_object(_broken(pipeline, "wait/half.dcm")) is None

    (letter,) = pipeline.dead_letters("import")
    assert "reasons" not in letter
    assert "(operation log: http" in letter["reason"]
    assert letter["reason"].endswith(f"the per-file reason is not in Cloud Logging: no entry for operation"
                                     f" {letter['operation']} within 1 s")


def test_logging_unreachable_still_dead_letters_with_the_link(pipeline, monkeypatch) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("LOGGING_API_ENDPOINT", f"http://127.0.0.1:{port}")

    assert import_dicom_object(_broken(pipeline, "down/half.dcm")) is None

    (letter,) = pipeline.dead_letters("import")
    assert "(operation log: http" in letter["reason"] and "entries:list" in letter["reason"]
    assert "\n" not in letter["reason"]
