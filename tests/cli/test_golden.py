"""Golden outputs of `--format json`: the CLI's machine-readable contract. Volatile values (resource names,
operation ids, UIDs, times, paths) are replaced by placeholders, then the JSON is compared with
tests/cli/golden/NAME.json. After an intended change: UPDATE_GOLDEN=1 pytest tests/cli/test_golden.py, review."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from cli import main
from local_bigquery.warehouse import create_dataset
from tests.cli.conftest import upload_studies

pytestmark = pytest.mark.integration
GOLDEN = Path(__file__).parent / "golden"
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_OPERATION = re.compile(r"/operations/\d+")
_UID = re.compile(r"\b\d+(\.\d+){3,}\b")


def normalize(value: Any, names: dict[str, str]) -> Any:
    """Placeholders for the given names (longest first), operation ids, times and DICOM UIDs (numbered in order)."""
    uids: dict[str, str] = {}

    def text(s: str) -> str:
        for real, placeholder in sorted(names.items(), key=lambda item: -len(item[0])):
            s = s.replace(real, placeholder)
        s = _OPERATION.sub("/operations/<id>", _TIME.sub("<time>", s))
        return _UID.sub(lambda m: uids.setdefault(m[0], f"<uid-{len(uids) + 1}>"), s)

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {text(k): walk(item) for k, item in v.items()}
        if isinstance(v, list):
            return [walk(item) for item in v]
        return text(v) if isinstance(v, str) else v

    return walk(value)


def assert_golden(name: str, output: str, names: dict[str, str]) -> None:
    actual = normalize(json.loads(output), names)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(path.read_text()), f"{name}: {json.dumps(actual, indent=2, sort_keys=True)}"


@pytest.fixture
def imported(cli_env, new_store, new_bucket, capsys):
    """A store holding 2 studies (CT, MR) × 2 instances, and a filter file gs://BUCKET/first.txt of the first."""
    store, bucket = new_store(), new_bucket()
    instances = upload_studies(bucket, studies=2, series=1, instances=2)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm", "--format", "json"]) == 0
    import_output = capsys.readouterr().out
    bucket.blob("first.txt").upload_from_string(f"/studies/{instances[0].study_uid}\n".encode())
    names = {store.name: "<store>", store.dataset_name: "<dataset>", bucket.name: "<bucket>"}
    return store, bucket, names, import_output


def test_import_summary(imported) -> None:
    _, _, names, output = imported
    assert_golden("import", output, names)


def test_import_failure_summary(cli_env, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    upload_studies(bucket, instances=1)
    bucket.blob("in/bad.dcm").upload_from_string(b"not dicom at all")
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm", "--format", "json"]) == 1
    names = {store.name: "<store>", store.dataset_name: "<dataset>", bucket.name: "<bucket>"}
    assert_golden("import-failure", capsys.readouterr().out, names)


def test_export_bq_summary(imported, emulator, capsys) -> None:
    store, bucket, names, _ = imported
    table = f"bq://{store.project}.golden_{store.store.replace('-', '_')}.t"
    create_dataset(emulator.data_dir, store.project, f"golden_{store.store.replace('-', '_')}")
    assert main(["export", "bq", store.name, table, "--filter-config-gcs-uri", f"gs://{bucket.name}/first.txt",
                 "--format", "json"]) == 0
    assert_golden("export-bq", capsys.readouterr().out, names)


def test_export_gcs_summary(imported, new_bucket, capsys) -> None:
    store, _, names, _ = imported
    out_bucket = new_bucket()
    assert main(["export", "gcs", store.name, f"gs://{out_bucket.name}/x", "--format", "json"]) == 0
    assert_golden("export-gcs", capsys.readouterr().out, names)


def test_storage_class_summary(imported, capsys) -> None:
    store, bucket, names, _ = imported
    assert main(["storage-class", store.name, "COLDLINE", "--filter-config-gcs-uri", f"gs://{bucket.name}/first.txt",
                 "--format", "json"]) == 0
    assert_golden("storage-class", capsys.readouterr().out, names)


def test_operations_list(imported, capsys) -> None:
    store, bucket, names, _ = imported
    assert main(["export", "gcs", store.name, f"gs://{bucket.name}/out"]) == 0
    capsys.readouterr()
    assert main(["operations", "list", store.dataset_name, "--format", "json"]) == 0
    assert_golden("operations-list", capsys.readouterr().out, names)


def test_query(imported, emulator, capsys) -> None:
    store, _, names, _ = imported
    table = f"{store.project}.golden_{store.store.replace('-', '_')}.instances"
    create_dataset(emulator.data_dir, store.project, f"golden_{store.store.replace('-', '_')}")
    assert main(["export", "bq", store.name, f"bq://{table}"]) == 0
    capsys.readouterr()
    sql = (f"SELECT StudyInstanceUID, Modality, COUNT(*) AS instances, MIN(PatientID) AS patient,"
           f" MIN(StudyDate) AS study_date FROM `{table}` GROUP BY StudyInstanceUID, Modality ORDER BY Modality")
    assert main(["query", "--data-dir", str(emulator.data_dir), "--format", "json", sql]) == 0
    assert_golden("query", capsys.readouterr().out, names)


def test_filter_validate(tmp_path, capsys) -> None:
    path = tmp_path / "filter.txt"
    path.write_text("/studies/1.2.3\n/studies/1.2.3/series\n/studies/1.2.3/series/4.5/instances/6.7\nx\n")
    assert main(["filter", "validate", str(path), "--format", "json"]) == 1
    assert_golden("filter-validate", capsys.readouterr().out, {str(path): "<file>"})


def test_filter_build(cli_env, emulator, tmp_path, capsys) -> None:
    path = tmp_path / "f.txt"
    sql = "SELECT '1.2.3' AS StudyInstanceUID, '4.5' AS SeriesInstanceUID"
    assert main(["filter", "build", "--data-dir", str(emulator.data_dir), "--sql", sql, "--output", str(path),
                 "--format", "json"]) == 0
    assert_golden("filter-build", capsys.readouterr().out, {str(path): "<file>"})
