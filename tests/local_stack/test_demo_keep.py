"""`python -m local_stack demo --keep`: the demo's stack stays up for the web console, then `down` stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from console.server import ConsoleServer
from console.settings import resolve
from healthcare_emulator.lifecycle import process_alive
from local_stack.__main__ import _read_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_demo_keep_leaves_the_stack_to_the_console_until_down(tmp_path, monkeypatch) -> None:
    for name in ("HEALTHCARE_API_ENDPOINT", "STORAGE_EMULATOR_HOST", "HEALTHCARE_EMULATOR_DATA_DIR",
                 "STAGING_BUCKET", "GOOGLE_CLOUD_PROJECT", "DICOM_STORE", "BIGQUERY_TABLE"):
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / "demo"
    demo = subprocess.Popen([sys.executable, "-m", "local_stack", "demo", "--keep", "--studies", "1",
                             "--run-dir", str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # ends when the demo exits: then the assertion below shows why
            output.append(line)
            if line.startswith("web console:"):
                break
        assert f"dicom-pipeline console --run-dir {run_dir}" in "".join(output), "".join(output)
        state = _read_state(run_dir)
        assert state is not None and state["pid"] == demo.pid

        with ConsoleServer(resolve(run_dir=run_dir)) as console:
            studies = requests.get(console.url, timeout=60)
            assert studies.status_code == 200 and "SYNTH-0000" in studies.text  # the demo's synthetic study

        down = subprocess.run([sys.executable, "-m", "local_stack", "down", "--run-dir", str(run_dir)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0 and "stopped" in down.stdout
        rest = demo.communicate(timeout=60)[0]
        assert demo.returncode == 0, "".join(output) + rest
        assert "stopped every process the stack started" in rest
        deadline = time.monotonic() + 10
        while any(process_alive(pid) for pid in state["pids"].values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in state["pids"].values() if process_alive(pid)]
        assert _read_state(run_dir) is None
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
