"""Files the store refuses are refused with the reason that is true: a cut file meta, a DICOMDIR."""

from __future__ import annotations

import pytest
import requests
from pydicom.data import get_testdata_file

from healthcare_emulator.dicom.parsing import InvalidDicom, parse_instance
from tests.helpers import run_import

CT_SMALL = get_testdata_file("CT_small.dcm")
DICOMDIR = get_testdata_file("DICOMDIR")


def _cut_inside_media_storage_sop_instance_uid() -> bytes:
    data = open(CT_SMALL, "rb").read()  # noqa: SIM115 - a test file read once
    start = data.index(b"\x02\x00\x03\x00UI")  # (0002,0003) MediaStorageSOPInstanceUID, explicit VR
    return data[:start + 8 + 5]  # header and five bytes of its value


@pytest.mark.parametrize("keep", [2, 6, 8, 13])
def test_a_file_meta_cut_inside_an_element_names_that_element(keep):
    data = open(CT_SMALL, "rb").read()  # noqa: SIM115
    start = data.index(b"\x02\x00\x03\x00UI")
    with pytest.raises(InvalidDicom) as raised:
        parse_instance(data[:start + keep])
    message = str(raised.value)
    assert "truncated" in message and "file meta" in message, message
    assert "TransferSyntaxUID" not in message, message
    if keep >= 4:
        assert "MediaStorageSOPInstanceUID (0002,0003)" in message, message


def test_a_dicomdir_is_refused_as_not_a_composite_instance():
    with pytest.raises(InvalidDicom) as raised:
        parse_instance(open(DICOMDIR, "rb").read())  # noqa: SIM115
    message = str(raised.value)
    assert "DICOMDIR" in message and "not a composite instance" in message, message
    assert "StudyInstanceUID" not in message, message


def test_a_file_meta_without_transfer_syntax_still_says_so():
    no_tsyntax = get_testdata_file("meta_missing_tsyntax.dcm")
    with pytest.raises(InvalidDicom, match="no TransferSyntaxUID"):
        parse_instance(open(no_tsyntax, "rb").read())  # noqa: SIM115


@pytest.mark.integration
def test_import_logs_the_true_reasons(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    bucket.blob("in/cut.dcm").upload_from_string(_cut_inside_media_storage_sop_instance_uid())
    bucket.blob("in/DICOMDIR.dcm").upload_from_string(open(DICOMDIR, "rb").read())  # noqa: SIM115
    operation = run_import(healthcare, store, f"gs://{bucket.name}/in/*.dcm")
    assert operation["error"]["code"] == 3, operation
    entries = requests.get(operation["metadata"]["logsUrl"], timeout=10).json()["entries"]
    reasons = {entry["resource"].rsplit("/", 1)[-1]: entry["message"] for entry in entries}
    assert "MediaStorageSOPInstanceUID" in reasons["cut.dcm"], reasons
    assert "not a composite instance" in reasons["DICOMDIR.dcm"], reasons
