"""Starting helper servers as child processes: free ports, readiness polling (never sleeps), clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(check: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path,
                     timeout: float = 30.0) -> None:
    """Poll `check` until it is true; fail naming the component and its log tail if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}:\n{tail(log)}")
        if check():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} was not ready after {timeout:.0f} s:\n{tail(log)}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL we built
                return bool(200 <= response.status < 300)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return check


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process in its own session so stop() can end its whole process group."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                start_new_session=True)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) and its descendants (gunicorn's worker, the JVM behind
    a launcher script), from /proc: what the benches report per instance or message."""
    tick, total, pending = os.sysconf("SC_CLK_TCK"), 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


class ManagedServer:
    """A helper server run as a child process with a private log; subclasses say how to start it."""

    name = "server"

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self._logdir = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        self.log = Path(self._logdir.name) / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {}

    def ready_url(self) -> str:
        raise NotImplementedError

    def start(self) -> Self:
        self._process = start(self.command(), self.log, self.environment())
        wait_until_ready(http_ok(self.ready_url()), self._process, self.name, self.log, 60)
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop(self._process)
            self._process = None
        self._logdir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
