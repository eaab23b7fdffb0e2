"""Streaming rows to BigQuery (streamConfigs): the entry point the emulator calls for each stored instance.

Tables created and extended, rows over 1 MB skipped, an instance that cannot become a row fails alone.
Tables are DuckDB files under the emulator's data directory, read back with DuckDB.
"""

from __future__ import annotations

import json

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_samples import synthetic_studies

from .helpers import column_types, new_table, part10, rich_instance, rows, stow, uri

pytestmark = pytest.mark.integration


def test_append_instances_creates_extends_and_skips_rows_over_one_megabyte(emulator, new_store, caplog):
    from healthcare_emulator.errors import InvalidArgument
    from healthcare_emulator.jobs.bigquery_export import append_instances

    store = new_store()
    plain = list(synthetic_studies(studies=1, series_per_study=1, instances_per_series=2))
    rich, rich_data = rich_instance()
    huge = Dataset()
    huge.add_new(0x0040A160, "UT", "x" * (1024 * 1024 + 1))  # TextValue: a row above the streaming limit
    stow(emulator, store, [i.data for i in plain] + [rich_data, part10(huge)])
    app = emulator.emulator
    store_id, _ = app.storage.get_store(store.name)
    records = {r.sop_uid: r for r in app.storage.find_instances(store_id)}
    table = new_table(emulator)

    append_instances(app.data_dir, uri(table), store.name, [records[plain[0].sop_uid]], True)
    first = column_types(emulator, table)
    append_instances(app.data_dir, uri(table), store.name,
                     [records[plain[1].sop_uid], records[rich.SOPInstanceUID], records[huge.SOPInstanceUID]], True)

    got = rows(emulator, table)
    assert sorted(r["SOPInstanceUID"] for r in got) == sorted([plain[0].sop_uid, plain[1].sop_uid, rich.SOPInstanceUID])
    assert {r["SourceDicomStore"] for r in got} == {store.name} and {r["Type"] for r in got} == {"INSERT"}
    assert "OtherElements" not in first and "OtherElements" in column_types(emulator, table)
    assert "larger than BigQuery's 1 MB streaming limit" in caplog.text
    with pytest.raises(InvalidArgument, match="streamConfigs"):
        append_instances(app.data_dir, "bq://only.two", store.name, list(records.values()), False)


def test_an_instance_whose_metadata_cannot_become_a_row_fails_alone():
    """The per-instance failure path, fed with records as storage returns them (one with unusable metadata)."""
    from healthcare_emulator.jobs.bigquery_export import _convert
    from healthcare_emulator.store.dicom_store import InstanceRecord

    def record(sop: str, metadata: str) -> InstanceRecord:
        return InstanceRecord(1, "1.2", "1.2.3", sop, "1.2.840.10008.5.1.4.1.1.7", ExplicitVRLittleEndian, "0" * 64,
                              100, "STANDARD", metadata, len(metadata), "2024-01-02T03:04:05.000006Z",
                              "2024-01-02T03:04:05.000006Z")

    good = json.dumps({"00080018": {"vr": "UI", "Value": ["1.2.3.4"]}, "00100010": {"vr": "PN"}})
    lone_surrogate = json.dumps({"00100020": {"vr": "LO", "Value": ["\ud800"]}})  # not encodable as UTF-8
    batch = _convert([record("1.2.3.4", good), record("1.2.3.5", lone_surrogate), record("1.2.3.6", "{not json")],
                     "projects/p/locations/l/datasets/d/dicomStores/s", False, False, True, "INSERT")

    assert [json.loads(line)["SOPInstanceUID"] for line in batch.lines] == ["1.2.3.4"]
    assert [(r.sop_uid, reason.rsplit(": ", 1)[1]) for r, reason in batch.failures] == [
        ("1.2.3.5", "UnicodeEncodeError"), ("1.2.3.6", "JSONDecodeError")]
    assert json.loads(batch.lines[0])["LastUpdated"] == "2024-01-02 03:04:05.000006"
    assert "PatientID" not in {f.name for f in batch.fields}  # only the failed instance had it
