"""`local-stack up|status|down` through the CLI, in a temporary run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli import main
from local_bigquery.warehouse import create_dataset
from tests.cli.conftest import storage_class, upload_studies

pytestmark = pytest.mark.integration


def _running(pid: int) -> bool:
    """A process that exists and is not a zombie (exited, waiting for its parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_status_when_nothing_runs_exits_1(tmp_path, capsys) -> None:
    assert main(["local-stack", "status", "--run-dir", str(tmp_path)]) == 1
    assert "not running" in capsys.readouterr().out
    assert main(["local-stack", "down", "--run-dir", str(tmp_path)]) == 0


@pytest.mark.slow
def test_the_operator_workflow_against_the_local_stack_then_down_leaves_no_process(tmp_path, monkeypatch,
                                                                                    capsys) -> None:
    """up → import, export bq, filter build (CT), storage-class, query through the CLI → status → down."""
    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery

    run_dir = tmp_path / "stack"
    pids: list[int] = []
    try:
        assert main(["local-stack", "up", "--run-dir", str(run_dir)]) == 0
        out = capsys.readouterr().out
        state = json.loads((run_dir / "state.json").read_text())
        pids = [state["pid"], *state["pids"].values()]
        warehouse = state["endpoints"]["warehouse-dir"]
        assert f"export HEALTHCARE_EMULATOR_DATA_DIR={warehouse}" in out
        for key in ("HEALTHCARE_API_ENDPOINT", "STORAGE_EMULATOR_HOST"):
            assert f"export {key}=" in out
            monkeypatch.setenv(key, state["env"][key])
        store = state["store"]

        # A bucket of its own: uploads to the stack's landing bucket would also trigger the import function.
        gcs = storage.Client(project="local-project", credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": state["env"]["STORAGE_EMULATOR_HOST"]})
        instances = upload_studies(gcs.create_bucket("cli-source"), studies=2, series=1, instances=2)
        assert main(["import", store, "gs://cli-source/in/*.dcm"]) == 0
        create_dataset(warehouse, "local-project", "cli")
        assert main(["export", "bq", store, "bq://local-project.cli.instances"]) == 0
        sql = "SELECT StudyInstanceUID FROM `local-project.cli.instances` WHERE Modality = 'CT'"
        assert main(["filter", "build", "--data-dir", warehouse, "--sql", sql,
                     "--output", "gs://cli-source/ct.txt"]) == 0
        assert main(["storage-class", store, "ARCHIVE", "--filter-config-gcs-uri", "gs://cli-source/ct.txt"]) == 0
        capsys.readouterr()
        sql = "SELECT Modality, COUNT(*) AS n FROM `local-project.cli.instances` GROUP BY Modality ORDER BY Modality"
        assert main(["query", "--data-dir", warehouse, "--format", "json", sql]) == 0
        assert json.loads(capsys.readouterr().out) == [{"Modality": "CT", "n": "2"}, {"Modality": "MR", "n": "2"}]
        healthcare = discovery.build("healthcare", "v1", credentials=AnonymousCredentials(), cache_discovery=False,
                                     client_options={"api_endpoint": state["env"]["HEALTHCARE_API_ENDPOINT"]})
        classes = {i.sop_uid: storage_class(healthcare, store, i) for i in instances}
        assert classes == {i.sop_uid: "ARCHIVE" if i.modality == "CT" else "STANDARD" for i in instances}

        assert main(["local-stack", "status", "--run-dir", str(run_dir)]) == 0
        assert "healthcare-emulator" in capsys.readouterr().out
    finally:
        assert main(["local-stack", "down", "--run-dir", str(run_dir)]) == 0
    assert pids and [pid for pid in pids if _running(pid)] == []
    assert main(["local-stack", "status", "--run-dir", str(run_dir)]) == 1
    assert os.path.exists(run_dir / "stack.log")

