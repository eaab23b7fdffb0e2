"""dicomStores.export to BigQuery: rows and columns.

Value mapping per VR, schemaJson, the source store column, change data capture, schema growth and type conflicts.
Through google-api-python-client against the running emulator; filter files live in fake-gcs-server; tables are
DuckDB files under the emulator's data directory (catalog = project, schema = dataset), read back with DuckDB.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from datetime import time as dtime

import duckdb
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from .helpers import column_types, export, new_table, part10, qualified, rich_instance, rows, stow, uri

pytestmark = pytest.mark.integration


def test_include_source_store_adds_the_store_name_column(emulator, healthcare, populated):
    store, instances = populated
    with_source, without = new_table(emulator), new_table(emulator)
    export(healthcare, store, {"tableUri": uri(with_source), "includeSourceStore": True})
    export(healthcare, store, {"tableUri": uri(without), "includeSourceStore": False})

    assert {r["SourceDicomStore"] for r in rows(emulator, with_source)} == {store.name}
    assert "SourceDicomStore" not in column_types(emulator, without)
    extra = column_types(emulator, without)
    assert (extra["StorageClass"], extra["BlobStorageSize"], extra["StructuredStorageSize"], extra["LastUpdated"],
            extra["Type"], extra["DroppedTags"]) == ("VARCHAR", "BIGINT", "BIGINT", "TIMESTAMP", "VARCHAR",
                                                      "STRUCT(TagName VARCHAR)[]")
    row = rows(emulator, without)[0]
    size = {i.sop_uid: len(i.data) for i in instances}[row["SOPInstanceUID"]]
    assert (row["StorageClass"], row["BlobStorageSize"], row["Type"]) == ("STANDARD", size, "INSERT")
    assert row["StructuredStorageSize"] > 0
    assert abs((datetime.utcnow() - row["LastUpdated"]).total_seconds()) < 600


def test_value_mapping_pn_sq_private_dates_and_dropped_tags(emulator, healthcare, new_store):
    store = new_store()
    _, data = rich_instance()
    stow(emulator, store, [data])
    table = new_table(emulator)

    operation = export(healthcare, store, {"tableUri": uri(table)})

    assert operation["metadata"]["counter"] == {"success": "1"} and "error" not in operation
    (row,) = rows(emulator, table)
    types = column_types(emulator, table)
    # file meta included, group lengths not
    assert row["TransferSyntaxUID"] == ExplicitVRLittleEndian
    assert "FileMetaInformationGroupLength" not in types
    # PN: three groups of five components, always the full structure
    assert row["PatientName"] == {
        "Alphabetic": {"FamilyName": "Doe", "GivenName": "John", "MiddleName": "Quincy", "NamePrefix": "Dr",
                       "NameSuffix": "Jr"},
        "Ideographic": {"FamilyName": "山田", "GivenName": "太郎", "MiddleName": None, "NamePrefix": None,
                        "NameSuffix": None},
        "Phonetic": {"FamilyName": "やまだ", "GivenName": "たろう", "MiddleName": None, "NamePrefix": None,
                     "NameSuffix": None},
    }
    assert [n["Alphabetic"]["FamilyName"] for n in row["OperatorsName"]] == ["Smith", "Lee"]
    assert types["OperatorsName"].endswith("[]") and not types["PatientName"].endswith("[]")
    assert row["PatientID"] == "A\\B"
    # dates and times
    assert row["StudyDate"] == date(2024, 1, 2)
    assert row["StudyTime"] == dtime(10, 15, 30, 250000) and row["ContentTime"] == dtime(9, 15)
    assert row["AcquisitionDateTime"] == datetime(2024, 1, 2, 9, 15, 30, 123456)  # +0100 → UTC
    assert row["PatientBirthDate"] is None
    # numbers: DS/IS stay strings, exactly as the file wrote them; FD float, US/AT integers
    assert (row["SliceThickness"], row["InstanceNumber"]) == ("1.250", "7")
    assert row["ImagePositionPatient"] == ["0", "-12.5", "3"]
    assert (types["SliceThickness"], types["ImagePositionPatient"]) == ("VARCHAR", "VARCHAR[]")
    assert row["FrameIncrementPointer"] == [0x00181063] and types["FrameIncrementPointer"] == "BIGINT[]"
    assert (row["Rows"], row["DiffusionBValue"], row["SmallestImagePixelValue"]) == (4, 1000.0, 3)
    assert row["OverlayRows"] == 16
    # sequences: a list of structs, recursively; nested private elements in a nested OtherElements
    assert [i["ReferencedSOPClassUID"] for i in row["ReferencedImageSequence"]] == ["1.2.3", "1.2.5"]
    assert row["ReferencedImageSequence"][0]["ReferencedSOPInstanceUID"] == "1.2.3.4"
    assert row["ReferencedImageSequence"][1]["OtherElements"] == [
        {"Tag": "Tag_00090010", "Data": ["ACME"]}, {"Tag": "Tag_00091001", "Data": ["nested private"]}]
    assert row["IconImageSequence"] == [{"Rows": 2}]
    assert "ReferencedSeriesSequence" not in types  # items without exportable elements: no RECORD to make
    # private and unknown elements
    assert row["OtherElements"] == [
        {"Tag": "Tag_00090010", "Data": ["ACME 1.0"]},
        {"Tag": "Tag_00091001", "Data": ["one", "two"]},
        {"Tag": "Tag_00091002", "Data": ["5", "6"]},
        {"Tag": "Tag_0018FFF0", "Data": ["unknown public"]},
        {"Tag": "Tag_60020010", "Data": ["32"]},
    ]
    assert row["Tag_00091004"] == [{"CodeValue": "C1"}]
    assert sorted(d["TagName"] for d in row["DroppedTags"]) == sorted([
        "FileMetaInformationVersion", "PatientBirthDate", "Tag_00091003", "Tag_00191001",
        "IconImageSequence.PixelData", "PixelData"])
    assert "PixelData" not in types


def test_schema_json_puts_every_tag_in_one_json_column(emulator, healthcare, new_store):
    from local_bigquery.query import run_query

    store = new_store()
    _, data = rich_instance()
    stow(emulator, store, [data])
    table = new_table(emulator)

    operation = export(healthcare, store, {"tableUri": uri(table), "schemaJson": {}, "includeSourceStore": True})

    assert "error" not in operation, operation
    assert column_types(emulator, table) == {
        "StudyInstanceUID": "VARCHAR", "SeriesInstanceUID": "VARCHAR", "SOPInstanceUID": "VARCHAR",
        "SourceDicomStore": "VARCHAR", "Metadata": "JSON", "StructuredStorageSize": "BIGINT",
        "DroppedTags": "VARCHAR[]", "StorageClass": "VARCHAR", "LastUpdated": "TIMESTAMP",
        "BlobStorageSize": "BIGINT", "Type": "VARCHAR"}
    (row,) = rows(emulator, table)
    metadata = json.loads(row["Metadata"])
    assert metadata["PatientName"]["Alphabetic"]["GivenName"] == "John"
    assert metadata["StudyDate"] == "2024-01-02"
    assert "PixelData" in row["DroppedTags"]
    sql = "SELECT JSON_VALUE(Metadata, '$.PatientName.Alphabetic.FamilyName') AS family FROM `{}.{}.{}`"
    columns, result = run_query(emulator.data_dir, sql.format(*table))
    assert (columns, result) == (["family"], [("Doe",)])


def test_change_data_capture_keeps_only_the_latest_row_per_instance(emulator, populated):
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery

    beta = discovery.build("healthcare", "v1beta1", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": emulator.url}, cache_discovery=False)
    store, instances = populated
    table = new_table(emulator)
    destination = {"tableUri": uri(table), "schemaJson": {}, "changeDataCaptureConfig": {},
                   "writeDisposition": "WRITE_APPEND"}
    for _ in range(2):
        assert "error" not in export(beta, store, destination)

    got = rows(emulator, table)
    assert sorted(r["SOPInstanceUID"] for r in got) == sorted(i.sop_uid for i in instances)
    assert "Type" not in column_types(emulator, table)


def test_write_append_adds_columns_and_grows_nested_records_without_losing_rows(emulator, healthcare, new_store):
    first, second = new_store(), new_store()
    old = Dataset()
    old.PatientName = "Old^Row"
    old.ReferencedImageSequence = Sequence([Dataset()])
    old.ReferencedImageSequence[0].ReferencedSOPClassUID = "1.2.3"
    stow(emulator, first, [part10(old)])
    new = Dataset()
    new.PatientName = "New^Row"
    new.BodyPartExamined = "CHEST"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.4"
    item.ReferencedFrameNumber = ["1", "2"]
    code = Dataset()
    code.CodeValue = "121311"
    item.PurposeOfReferenceCodeSequence = Sequence([code])
    new.ReferencedImageSequence = Sequence([item])
    stow(emulator, second, [part10(new)])
    table = new_table(emulator)

    assert "error" not in export(healthcare, first, {"tableUri": uri(table), "writeDisposition": "WRITE_APPEND"})
    before = column_types(emulator, table)
    assert "error" not in export(healthcare, second, {"tableUri": uri(table), "writeDisposition": "WRITE_APPEND"})
    assert "error" not in export(healthcare, first, {"tableUri": uri(table), "writeDisposition": "WRITE_APPEND"})

    after = column_types(emulator, table)
    assert "BodyPartExamined" not in before and after["BodyPartExamined"] == "VARCHAR"
    assert after["ReferencedImageSequence"] == (
        "STRUCT(ReferencedSOPClassUID VARCHAR, ReferencedFrameNumber VARCHAR[],"
        ' PurposeOfReferenceCodeSequence STRUCT(CodeValue VARCHAR)[])[]')
    got = rows(emulator, table, "PatientName.Alphabetic.FamilyName AS name, BodyPartExamined, ReferencedImageSequence",
               order="name, BodyPartExamined")
    assert [(r["name"], r["BodyPartExamined"]) for r in got] == [("New", "CHEST"), ("Old", None), ("Old", None)]
    assert got[0]["ReferencedImageSequence"] == [{"ReferencedSOPClassUID": "1.2.4", "ReferencedFrameNumber": ["1", "2"],
                                                  "PurposeOfReferenceCodeSequence": [{"CodeValue": "121311"}]}]
    for old_row in got[1:]:
        assert old_row["ReferencedImageSequence"] == [{"ReferencedSOPClassUID": "1.2.3", "ReferencedFrameNumber": None,
                                                       "PurposeOfReferenceCodeSequence": None}]


def test_append_to_a_column_of_another_type_fails_and_leaves_the_table_alone(emulator, healthcare, populated):
    store, _ = populated
    table = new_table(emulator)
    path = emulator.data_dir / "warehouse" / f"{table[0]}.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{table[1]}"')
    con.execute(f"CREATE TABLE {qualified(table)} (SOPInstanceUID VARCHAR, PatientName VARCHAR)")
    con.execute(f"INSERT INTO {qualified(table)} VALUES ('1.2', 'Doe^Jane')")
    con.close()

    operation = export(healthcare, store, {"tableUri": uri(table), "writeDisposition": "WRITE_APPEND"})

    assert operation["error"]["code"] == 9  # FAILED_PRECONDITION
    assert "PatientName" in operation["error"]["message"]
    assert column_types(emulator, table) == {"SOPInstanceUID": "VARCHAR", "PatientName": "VARCHAR"}
    assert len(rows(emulator, table)) == 1
