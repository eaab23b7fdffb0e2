"""`query`: BigQuery SQL over the local warehouse (table and JSON output), and its usage errors."""

from __future__ import annotations

import json
import uuid

import pytest

from cli import main
from local_bigquery.warehouse import create_dataset
from tests.cli.conftest import upload_studies

pytestmark = pytest.mark.integration


@pytest.fixture
def exported_table(cli_env, emulator, new_store, new_bucket, capsys):
    """2 CT and 2 MR instances imported and exported to a table of the local warehouse; returns its name."""
    store, bucket = new_store(), new_bucket()
    upload_studies(bucket, studies=2, series=1, instances=2)
    table = f"{store.project}.cli_{store.store.replace('-', '_')}.instances"
    create_dataset(emulator.data_dir, *table.split(".")[:2])
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    assert main(["export", "bq", store.name, f"bq://{table}"]) == 0
    capsys.readouterr()
    return table


def test_query_json_is_a_list_of_objects(exported_table, emulator, capsys) -> None:
    sql = f"SELECT Modality, COUNT(*) AS instances FROM `{exported_table}` GROUP BY Modality ORDER BY Modality"
    assert main(["query", "--data-dir", str(emulator.data_dir), sql, "--format", "json"]) == 0
    # INT64 as a string, as BigQuery's JSON writes it (the seed shows "InstanceCount": "4").
    assert json.loads(capsys.readouterr().out) == [{"Modality": "CT", "instances": "2"},
                                                    {"Modality": "MR", "instances": "2"}]


def test_the_seeds_recent_studies_query_prints_bigquerys_json(exported_table, emulator, capsys) -> None:
    sql = ("#standardSQL\nSELECT\nMIN(CONCAT(StudyDate, ' ', StudyTime)) as StudyDateTime, MIN(PatientID) as"
           f" PatientID, StudyInstanceUID, COUNT(*) as InstanceCount\nFROM\n`{exported_table}` AS dicom\n"
           "GROUP BY StudyInstanceUID\nORDER BY StudyDateTime DESC\nLIMIT 10;")
    assert main(["query", "--data-dir", str(emulator.data_dir), sql, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and {row["InstanceCount"] for row in rows} == {"2"}
    assert all(isinstance(row["StudyDateTime"], str) and isinstance(row["PatientID"], str) for row in rows)


def test_query_table_is_aligned_with_a_header(exported_table, emulator, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HEALTHCARE_EMULATOR_DATA_DIR", str(emulator.data_dir))
    sql = (f"SELECT Modality, COUNT(*) AS instances, MIN(PatientID) AS first_patient FROM `{exported_table}`"
           " GROUP BY Modality ORDER BY Modality")
    assert main(["query", sql]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Modality  instances  first_patient",
        "--------  ---------  -------------",
        "CT        2          SYNTH-0000",
        "MR        2          SYNTH-0001",
    ]


def test_a_dataset_named_like_its_project_is_exported_and_queried(cli_env, emulator, new_store, new_bucket,
                                                                   capsys) -> None:
    """bq://P.P.T: catalog P and schema P must not make the table name ambiguous on either side."""
    store, bucket = new_store(), new_bucket()
    upload_studies(bucket, studies=2, series=1, instances=2)
    name = f"same{uuid.uuid4().hex[:10]}"
    create_dataset(emulator.data_dir, name, name)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    assert main(["export", "bq", store.name, f"bq://{name}.{name}.instances"]) == 0
    assert main(["export", "bq", store.name, f"bq://{name}.{name}.instances", "--write-disposition",
                 "WRITE_APPEND"]) == 0
    capsys.readouterr()
    data_dir = str(emulator.data_dir)
    for table in (f"`{name}.{name}.instances`", f"`{name}`.{name}.instances", f"[{name}:{name}.instances]"):
        sql = f"SELECT Modality, COUNT(*) AS instances FROM {table} GROUP BY Modality ORDER BY Modality"
        assert main(["query", "--data-dir", data_dir, sql, "--format", "json"]) == 0, table
        assert json.loads(capsys.readouterr().out) == [{"Modality": "CT", "instances": "4"},
                                                        {"Modality": "MR", "instances": "4"}], table


def test_bad_sql_and_missing_tables_are_usage_errors(exported_table, emulator, capsys) -> None:
    data_dir = str(emulator.data_dir)
    for sql in ("SELEC nonsense", f"SELECT * FROM `{exported_table}_missing`", "DELETE FROM `p.d.t` WHERE TRUE"):
        assert main(["query", "--data-dir", data_dir, sql]) == 2
        err = capsys.readouterr().err
        assert err.startswith("dicom-pipeline: error: the query failed") and "Traceback" not in err


def test_the_local_stack_needs_the_data_dir(cli_env, tmp_path, capsys) -> None:
    assert main(["query", "SELECT 1"]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["query", "--data-dir", str(tmp_path / "missing"), "SELECT 1"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_bigquery_without_credentials_is_a_usage_error_naming_the_fix(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("HEALTHCARE_API_ENDPOINT", raising=False)
    monkeypatch.delenv("HEALTHCARE_EMULATOR_DATA_DIR", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert main(["query", "--project", "p", "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert "application-default login" in err and "--data-dir" in err and "Traceback" not in err
