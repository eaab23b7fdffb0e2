"""PHI-safe structured logs (dicom_pipeline.logs): JSON lines, unknown fields refused."""

from __future__ import annotations

import json
import logging

import pytest

from dicom_pipeline import logs


def test_log_lines_are_json_and_refuse_unknown_fields(capsys) -> None:
    logs.configure()
    logs.log(logging.ERROR, "boom", event_id="e1", object="gs://b/o", operation="op")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["severity"] == "ERROR" and line["event_id"] == "e1" and line["operation"] == "op"
    with pytest.raises(ValueError, match="PatientName"):
        logs.log(logging.INFO, "x", PatientName="Doe^John")
