"""The deploy entry point (main.py): importing it does no network or credential work."""

from __future__ import annotations

import subprocess
import sys


def test_importing_main_does_no_network_or_credential_work() -> None:
    code = ("import socket, sys\n"
            "def refuse(*a, **k): raise AssertionError('network at import time')\n"
            "socket.socket.connect = refuse\n"
            "import google.auth\n"
            "google.auth.default = refuse\n"
            "import main\n"
            "assert 'googleapiclient.discovery' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=__file__.rsplit("/tests/", 1)[0], env={})
