"""The Pub/Sub emulator that ships with gcloud, run directly (one Java process, no gcloud wrapper)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from .processes import free_port, http_ok, start, stop, wait_until_ready


def launcher_path() -> Path | None:
    """The emulator launcher inside the Cloud SDK, or None when gcloud or the component is missing."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    try:
        root = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True,
                              text=True, timeout=60, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    launcher = Path(root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    return launcher if launcher.exists() else None


class PubSubEmulator:
    """Pub/Sub emulator on 127.0.0.1; `host` ("127.0.0.1:PORT") goes into PUBSUB_EMULATOR_HOST."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._logdir = tempfile.TemporaryDirectory(prefix="pubsub-emulator-")
        self.log = Path(self._logdir.name) / "pubsub.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> PubSubEmulator:
        launcher = launcher_path()
        if launcher is None:
            raise RuntimeError("the Pub/Sub emulator is not installed (gcloud component pubsub-emulator)")
        self._process = start([str(launcher), "--host=127.0.0.1", f"--port={self.port}"], self.log)
        wait_until_ready(http_ok(f"http://{self.host}/"), self._process, "Pub/Sub emulator", self.log, 60)
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop(self._process)
            self._process = None
        self._logdir.cleanup()

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

