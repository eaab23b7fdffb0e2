"""DS and IS values: BigQuery keeps the text the file holds (reference §5.2: DS, IS → STRING, numeric strings not
converted); DICOMweb JSON keeps numbers (PS3.18 F.2.3). Through STOW and import, flattened and schemaJson."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from local_bigquery.query import run_query
from local_bigquery.warehouse import create_dataset
from tests.conftest import PROJECT
from tests.emulator.bigquery_export.helpers import export, part10, stow
from tests.helpers import run_import

pytestmark = pytest.mark.integration


def _instance() -> tuple[Dataset, bytes]:
    ds = Dataset()
    ds.PatientID = "NUMBERS"
    ds.Modality = "CT"
    ds.SliceLocation = "-250.000000"
    ds.WindowCenter = ["-97.50", "40"]
    ds.SliceThickness = "-2.25e3"
    ds.ImagePositionPatient = ["+5", ".5", "1."]  # valid DS texts that are not JSON numbers
    ds.InstanceNumber = "007"
    ds.AcquisitionNumber = "12"  # already canonical: nothing to remember
    item = Dataset()
    item.SliceThickness = "0.50"
    ds.ReferencedImageSequence = Sequence([item])
    ds.add_new(0x00090010, "LO", "NUMBERS TEST")
    ds.add_new(0x00091001, "DS", "3.140")  # private: OtherElements.Data keeps the text too
    return ds, part10(ds)


EXPECTED = {
    "SliceLocation": "-250.000000",
    "WindowCenter": ["-97.50", "40"],
    "SliceThickness": "-2.25e3",
    "ImagePositionPatient": ["+5", ".5", "1."],
    "InstanceNumber": "007",
    "AcquisitionNumber": "12",
}


def _table(emulator) -> str:
    dataset = f"bq_{uuid.uuid4().hex[:10]}"
    create_dataset(emulator.data_dir, PROJECT, dataset)
    return f"{PROJECT}.{dataset}.t"


def _check_row(emulator, table: str, sop_uid: str) -> None:
    columns = ", ".join(EXPECTED)
    _, rows = run_query(emulator.data_dir, f"SELECT {columns}, ReferencedImageSequence, OtherElements FROM `{table}`"
                                           f" WHERE SOPInstanceUID = '{sop_uid}'")
    (row,) = rows
    got = dict(zip(EXPECTED, row[:len(EXPECTED)], strict=True))
    assert got == EXPECTED
    assert row[len(EXPECTED)] == [{"SliceThickness": "0.50"}]
    assert {"Tag": "Tag_00091001", "Data": ["3.140"]} in row[len(EXPECTED) + 1]


def test_stowed_ds_and_is_keep_their_text_in_bigquery_and_numbers_in_dicomweb(emulator, healthcare, new_store):
    store = new_store()
    ds, data = _instance()
    stow(emulator, store, [data])
    table = _table(emulator)
    assert "error" not in export(healthcare, store, {"tableUri": f"bq://{table}"})
    _check_row(emulator, table, ds.SOPInstanceUID)

    json_table = _table(emulator)
    assert "error" not in export(healthcare, store, {"tableUri": f"bq://{json_table}", "schemaJson": {}})
    _, rows = run_query(emulator.data_dir, f"SELECT Metadata FROM `{json_table}`")
    metadata = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]
    assert {k: metadata[k] for k in EXPECTED} == EXPECTED

    answer = requests.get(f"{emulator.url}/v1/{store.name}/dicomWeb/studies/{ds.StudyInstanceUID}/series/"
                          f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/metadata", timeout=10)
    assert answer.status_code == 200, answer.text
    (dicom_json,) = answer.json()
    assert dicom_json["00201041"] == {"vr": "DS", "Value": [-250.0]}  # SliceLocation, a JSON number
    assert dicom_json["00281050"] == {"vr": "DS", "Value": [-97.5, 40]}
    assert dicom_json["00200013"] == {"vr": "IS", "Value": [7]}
    assert dicom_json["00200032"] == {"vr": "DS", "Value": [5, 0.5, 1.0]}


def test_imported_ds_and_is_keep_their_text_in_bigquery(emulator, healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    ds, data = _instance()
    bucket.blob("numbers.dcm").upload_from_string(data)
    assert "error" not in run_import(healthcare, store, f"gs://{bucket.name}/numbers.dcm")
    table = _table(emulator)
    assert "error" not in export(healthcare, store, {"tableUri": f"bq://{table}"})
    _check_row(emulator, table, ds.SOPInstanceUID)
