"""The operator CLI in-process (`cli.main`) against the emulator and fake-gcs-server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main
from dicom_samples import synthetic_studies
from local_bigquery.warehouse import create_dataset
from tests.cli.conftest import storage_class, upload_studies
from tests.helpers import metrics

pytestmark = pytest.mark.integration


def _upload(bucket, count: int = 3):
    return upload_studies(bucket, instances=count)


def test_import_waits_and_reports_counts_as_json(cli_env, healthcare, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    _upload(bucket)

    code = main(["import", store.name, f"gs://{bucket.name}/in/*.dcm", "--format", "json"])

    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["success"] == 3 and out["failure"] == 0 and out["done"] is True
    assert int(metrics(healthcare, store)["instanceCount"]) == 3


def test_import_failure_exits_1_with_per_file_reasons(cli_env, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    _upload(bucket, 1)
    bucket.blob("in/bad.dcm").upload_from_string(b"not dicom at all")

    code = main(["import", store.name, f"gs://{bucket.name}/in/*.dcm", "--format", "json"])

    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["success"] == 1 and out["failure"] == 1
    assert any("bad.dcm" in json.dumps(entry) for entry in out["logs"])


def test_import_failure_text_names_each_file_and_endpoint_flag_works(monkeypatch, emulator, fake_gcs, new_store,
                                                                     new_bucket, capsys) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    store, bucket = new_store(), new_bucket()
    bucket.blob("in/bad.dcm").upload_from_string(b"not dicom at all")

    assert main(["--endpoint", emulator.url, "import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 1
    out = capsys.readouterr().out
    assert "0 succeeded, 1 failed" in out
    assert f"gs://{bucket.name}/in/bad.dcm: " in out


def test_import_async_prints_the_name_then_operations_wait(cli_env, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    _upload(bucket, 2)

    assert main(["import", store.name, f"gs://{bucket.name}/in/**", "--async"]) == 0
    name = capsys.readouterr().out.strip()
    assert name.startswith(f"{store.dataset_name}/operations/")

    assert main(["operations", "wait", name]) == 0
    assert "2 succeeded, 0 failed" in capsys.readouterr().out


def test_import_storage_class_is_applied(cli_env, healthcare, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    instance = _upload(bucket, 1)[0]

    assert main(["import", store.name, f"gs://{bucket.name}/in/0.dcm", "--storage-class", "COLDLINE"]) == 0
    assert storage_class(healthcare, store.name, instance) == "COLDLINE"


def test_operations_list_shows_the_import(cli_env, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    _upload(bucket, 2)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm", "--format", "json"]) == 0
    name = json.loads(capsys.readouterr().out)["name"]

    assert main(["operations", "list", store.dataset_name, "--format", "json"]) == 0
    listed = {op["name"]: op for op in json.loads(capsys.readouterr().out)}
    assert listed[name] == {"name": name, "method": "ImportDicomData", "done": True, "success": 2, "failure": 0}

    assert main(["operations", "list", store.dataset_name]) == 0
    assert "ImportDicomData  done  2 ok  0 failed" in capsys.readouterr().out


def _import_two_studies_with_a_filter_on_the_first(store, bucket):
    """Import 2 studies × 2 instances with the CLI; write gs://BUCKET/filter.txt naming the first study."""
    instances = list(synthetic_studies(studies=2, series_per_study=1, instances_per_series=2))
    for index, instance in enumerate(instances):
        bucket.blob(f"in/{index}.dcm").upload_from_string(instance.data)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    target = instances[0].study_uid
    bucket.blob("filter.txt").upload_from_string(f"/studies/{target}\n".encode())
    return instances, target


def test_export_bq_with_a_filter_and_write_dispositions(cli_env, emulator, healthcare, new_store, new_bucket,
                                                        capsys) -> None:
    from local_bigquery.query import run_query

    store, bucket = new_store(), new_bucket()
    _, target = _import_two_studies_with_a_filter_on_the_first(store, bucket)
    table = f"bq://{store.project}.cli_{store.store.replace('-', '_')}.t"
    create_dataset(emulator.data_dir, store.project, f"cli_{store.store.replace('-', '_')}")
    capsys.readouterr()

    assert main(["export", "bq", store.name, table, "--filter-config-gcs-uri", f"gs://{bucket.name}/filter.txt",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["success"] == 2
    sql = f"SELECT DISTINCT StudyInstanceUID FROM `{table[len('bq://'):]}`"
    assert run_query(emulator.data_dir, sql)[1] == [(target,)]

    assert main(["export", "bq", store.name, table]) == 1  # legacy default: a full table is not overwritten
    assert main(["export", "bq", store.name, table, "--write-disposition", "WRITE_TRUNCATE"]) == 0
    assert run_query(emulator.data_dir, f"SELECT COUNT(*) FROM `{table[len('bq://'):]}`")[1] == [(4,)]
    assert main(["export", "bq", store.name, table, "--overwrite-table", "--write-disposition", "WRITE_APPEND"]) == 2


def test_export_gcs_with_a_filter_writes_only_the_filtered_instances(cli_env, gcs_client, new_store, new_bucket,
                                                                      capsys) -> None:
    store, bucket, out_bucket = new_store(), new_bucket(), new_bucket()
    instances, target = _import_two_studies_with_a_filter_on_the_first(store, bucket)

    assert main(["export", "gcs", store.name, f"gs://{out_bucket.name}/x", "--mime-type",
                 "application/dicom; transfer-syntax=*", "--filter-config-gcs-uri",
                 f"gs://{bucket.name}/filter.txt"]) == 0
    names = sorted(blob.name for blob in gcs_client.list_blobs(out_bucket.name))
    expected = sorted(f"x/{i.study_uid}/{i.series_uid}/{i.sop_uid}.dcm" for i in instances if i.study_uid == target)
    assert names == expected
    assert main(["export", "gcs", store.name, "s3://nope"]) == 2


def test_a_filter_built_from_modality_ct_exports_exactly_the_ct_instances(cli_env, emulator, gcs_client, new_store,
                                                                          new_bucket, capsys) -> None:
    store, bucket, out_bucket = new_store(), new_bucket(), new_bucket()
    instances = list(synthetic_studies(studies=4, series_per_study=2, instances_per_series=2))
    assert {i.modality for i in instances} == {"CT", "MR"}
    for index, instance in enumerate(instances):
        bucket.blob(f"in/{index}.dcm").upload_from_string(instance.data)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    table = f"{store.project}.cli_{store.store.replace('-', '_')}.instances"
    create_dataset(emulator.data_dir, *table.split(".")[:2])
    assert main(["export", "bq", store.name, f"bq://{table}"]) == 0
    capsys.readouterr()

    sql = f"SELECT StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID FROM `{table}` WHERE Modality = 'CT'"
    assert main(["filter", "build", "--data-dir", str(emulator.data_dir), "--sql", sql,
                 "--output", f"gs://{bucket.name}/ct.txt", "--format", "json"]) == 0
    ct = [i for i in instances if i.modality == "CT"]
    assert json.loads(capsys.readouterr().out)["lines"] == len(ct)
    assert main(["filter", "validate", f"gs://{bucket.name}/ct.txt"]) == 0

    assert main(["export", "gcs", store.name, f"gs://{out_bucket.name}/ct", "--filter-config-gcs-uri",
                 f"gs://{bucket.name}/ct.txt"]) == 0
    names = sorted(blob.name for blob in gcs_client.list_blobs(out_bucket.name))
    assert names == sorted(f"ct/{i.study_uid}/{i.series_uid}/{i.sop_uid}.dcm" for i in ct)


def test_filter_build_to_a_local_file_and_its_usage_errors(cli_env, emulator, tmp_path, capsys) -> None:
    assert main(["filter", "build", "--sql", "SELECT 1", "--output", str(tmp_path / "f.txt")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["filter", "build", "--data-dir", str(emulator.data_dir), "--sql", "SELECT 1 AS x",
                 "--output", str(tmp_path / "f.txt")]) == 2
    assert "StudyInstanceUID" in capsys.readouterr().err
    sql = "SELECT '1.2.3' AS StudyInstanceUID UNION ALL SELECT '1.2.4' AS StudyInstanceUID ORDER BY 1"
    assert main(["filter", "build", "--data-dir", str(emulator.data_dir), "--sql", sql,
                 "--output", str(tmp_path / "f.txt")]) == 0
    assert (tmp_path / "f.txt").read_text() == "/studies/1.2.3\n/studies/1.2.4\n"


def test_the_seeds_filter_query_builds_a_filter_from_one_column_of_paths(cli_env, emulator, new_store, new_bucket,
                                                                        tmp_path, capsys) -> None:
    """The seed's own query, verbatim but for the table: legacy SQL's [PROJECT:DATASET.TABLE], one CONCAT column."""
    store, bucket = new_store(), new_bucket()
    instances = list(synthetic_studies(studies=2, series_per_study=1, instances_per_series=2))
    for index, instance in enumerate(instances):
        bucket.blob(f"in/{index}.dcm").upload_from_string(instance.data)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    dataset = f"cli_{store.store.replace('-', '_')}"
    create_dataset(emulator.data_dir, store.project, dataset)
    assert main(["export", "bq", store.name, f"bq://{store.project}.{dataset}.instances"]) == 0
    sql = ("SELECT CONCAT ('/studies/', StudyInstanceUID, '/series/', SeriesInstanceUID, '/instances/',"
           f" SOPInstanceUID) FROM [{store.project}:{dataset}.instances]")
    out = tmp_path / "filter.txt"
    assert main(["filter", "build", "--data-dir", str(emulator.data_dir), "--sql", sql, "--output", str(out)]) == 0
    assert sorted(out.read_text().splitlines()) == sorted(
        f"/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}" for i in instances)
    # The other seed query's /dicomWeb/studies/... paths name the same resources.
    sql = sql.replace("'/studies/'", "'/dicomWeb/studies/'")
    assert main(["filter", "build", "--data-dir", str(emulator.data_dir), "--sql", sql, "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == len(instances)
    capsys.readouterr()
    assert main(["filter", "build", "--data-dir", str(emulator.data_dir), "--sql", "SELECT 'x/y' AS p",
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "row 1 of column p" in err and "/studies/S" in err and "Traceback" not in err


def test_filter_validate_names_the_bad_lines(tmp_path, capsys) -> None:
    path = tmp_path / "filter.txt"
    path.write_text("/studies/1.2.3\n\n/studies/1.2.3/series\n/studies/1/series/2/instances/3\nnonsense/x/y\n")

    assert main(["filter", "validate", str(path), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["lines"] == 4 and [bad["line"] for bad in out["bad"]] == [3, 5]
    assert main(["filter", "validate", str(tmp_path / "missing.txt")]) == 2


def test_operations_describe_json_golden(cli_env, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    _upload(bucket, 2)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm", "--async"]) == 0
    name = capsys.readouterr().out.strip()
    assert main(["operations", "wait", name]) == 0
    capsys.readouterr()

    assert main(["operations", "describe", name, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # Volatile values (names, times, URLs) are checked for shape and then replaced by placeholders.
    assert out["name"] == name
    assert out["metadata"]["logsUrl"].startswith("http")
    out["name"] = "<name>"
    for key in ("createTime", "endTime", "logsUrl"):
        assert key in out["metadata"]
        out["metadata"][key] = f"<{key}>"
    assert out == {
        "name": "<name>",
        "done": True,
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata",
            "apiMethodName": "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData",
            "counter": {"success": "2"},
            "createTime": "<createTime>",
            "endTime": "<endTime>",
            "logsUrl": "<logsUrl>",
        },
        "response": {"@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"},
    }


@pytest.mark.parametrize("argv", [
    ["import", "not-a-store", "gs://b/x.dcm"],
    ["import", "projects/p/locations/l/datasets/d/dicomStores/s", "s3://b/x"],
    ["import"],
    ["nonsense"],
])
def test_usage_errors_exit_2_without_traceback(cli_env, argv, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" in err


def test_missing_cloud_credentials_is_a_usage_error_with_the_fix(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("HEALTHCARE_API_ENDPOINT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert main(["operations", "describe", "projects/p/locations/l/datasets/d/operations/1"]) == 2
    err = capsys.readouterr().err
    assert "application-default login" in err and "Traceback" not in err


def _command_paths(parser, prefix=()):
    """Every command and sub-command of the parser, as argv prefixes (walks argparse's subparser actions)."""
    import argparse

    yield list(prefix)
    for action in parser._actions:  # argparse has no public walk of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*prefix, name))


def test_help_has_examples_everywhere(capsys) -> None:
    from cli.main import build_parser

    paths = list(_command_paths(build_parser()))
    assert all([name] in paths for name in ("storage-class", "local-stack", "query", "reconcile", "console"))
    assert ["dead-letters", "requeue"] in paths and len(paths) == 22
    for path in paths:
        assert main([*path, "--help"]) == 0
        assert "examples:" in capsys.readouterr().out, path


def test_runnable_as_python_m_cli_without_install() -> None:
    result = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True,
                            check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and "dicom-pipeline" in result.stdout


def test_output_piped_into_head_ends_quietly(tmp_path) -> None:
    path = tmp_path / "filter.txt"
    path.write_text("nonsense\n" * 20000)  # far more output than a pipe buffers
    result = subprocess.run(["bash", "-c", f'"{sys.executable}" -m cli filter validate "{path}" | head -1'],
                            capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.count("\n") == 1 and result.stderr == ""
