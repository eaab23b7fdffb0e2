"""Progress bars: drawn on a terminal (a pseudo-terminal here), silent when stderr is not one."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from cli import main
from tests.cli.conftest import upload_studies

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_no_progress_output_when_stderr_is_not_a_tty(cli_env, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    upload_studies(bucket, instances=2)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    assert capsys.readouterr().err == ""


def test_operations_wait_draws_a_bar_on_a_tty(cli_env, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    upload_studies(bucket, instances=3)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm", "--async"]) == 0
    name = capsys.readouterr().out.strip()

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # rows, columns of a terminal
    try:
        result = subprocess.run([sys.executable, "-m", "cli", "operations", "wait", name], stderr=terminal,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ), timeout=60,
                                check=False)
        os.close(terminal)
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal side is closed and everything has been read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
    assert result.returncode == 0 and "3 succeeded, 0 failed" in result.stdout
    text = drawn.decode(errors="replace")
    assert f"operation {name.rsplit('/', 1)[-1]}" in text and "3/3" in text and "0 failed" in text
