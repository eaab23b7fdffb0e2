"""No log record, on any path, carries the patient's name, id, birth date or accession number."""

from __future__ import annotations

import logging

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO

from dicom_samples import synthetic_instance
from main import export_dicom_metadata, import_dicom_object

from .conftest import pubsub_event

pytestmark = pytest.mark.integration

SENTINELS = {"PatientName": "Zzsentinel^Phiname", "PatientID": "PHI-ID-7731", "PatientBirthDate": "19110911",
             "AccessionNumber": "ACCPHI9931"}


def _sentinel_file(description: str | None = None, **uids: str):
    instance = synthetic_instance(**uids, patient_name=SENTINELS["PatientName"], patient_id=SENTINELS["PatientID"],
                                  accession_number=SENTINELS["AccessionNumber"])
    ds = pydicom.dcmread(DicomBytesIO(instance.data))
    ds.PatientBirthDate = SENTINELS["PatientBirthDate"]
    if description:
        ds.StudyDescription = description
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return instance, out.getvalue()


def test_no_phi_in_any_log_record(pipeline, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    instance, data = _sentinel_file()
    path = (f"{pipeline.store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
            f"/instances/{instance.sop_uid}")
    # Success paths, redelivery, a conflict (same UIDs, other bytes) and a dead-lettered export.
    import_event = pipeline.upload("phi/a.dcm", data)
    assert import_dicom_object(import_event) == "succeeded"
    assert import_dicom_object(import_event) == "already-imported"
    _, clash = _sentinel_file("other bytes", study_uid=instance.study_uid, series_uid=instance.series_uid,
                              sop_uid=instance.sop_uid)
    assert import_dicom_object(pipeline.upload("phi/b.dcm", clash)) is None
    (letter,) = pipeline.dead_letters("import")
    # The reason read from Cloud Logging names the conflict and nothing of the dataset.
    assert "already exists" in letter["reason"] and letter["reasons"] and letter["operation"]
    export_event = pubsub_event(path, {"action": "ImportDicomData"})
    assert export_dicom_metadata(export_event) == "succeeded"
    assert export_dicom_metadata(export_event) == "duplicate"
    assert export_dicom_metadata(pubsub_event(b"{not json")) is None

    texts = [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    assert len(caplog.records) >= 6
    for value in SENTINELS.values():
        for variant in {value, value.replace("^", " "), *value.split("^")}:
            assert all(variant not in text for text in texts), f"{variant!r} appeared in a log record"
