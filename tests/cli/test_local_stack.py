"""`local-stack up|status|down` through the CLI, in a temporary run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli import main

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
def test_up_status_down_leaves_no_process(tmp_path, capsys) -> None:
    run_dir = tmp_path / "stack"
    try:
        assert main(["local-stack", "up", "--run-dir", str(run_dir)]) == 0
        out = capsys.readouterr().out
        state = json.loads((run_dir / "state.json").read_text())
        pids = [state["pid"], *state["pids"].values()]
        assert f"export HEALTHCARE_EMULATOR_DATA_DIR={state['endpoints']['warehouse-dir']}" in out
        assert "export HEALTHCARE_API_ENDPOINT=" in out

        assert main(["local-stack", "status", "--run-dir", str(run_dir)]) == 0
        assert "healthcare-emulator" in capsys.readouterr().out
    finally:
        assert main(["local-stack", "down", "--run-dir", str(run_dir)]) == 0
    assert [pid for pid in pids if _running(pid)] == []
    assert main(["local-stack", "status", "--run-dir", str(run_dir)]) == 1
    assert os.path.exists(run_dir / "stack.log")
