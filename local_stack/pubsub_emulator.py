"""The Pub/Sub emulator that ships with gcloud, run directly (one Java process, no gcloud wrapper)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .processes import ManagedServer


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


class PubSubEmulator(ManagedServer):
    """Pub/Sub emulator on 127.0.0.1; `host` ("127.0.0.1:PORT") goes into PUBSUB_EMULATOR_HOST."""

    name = "pubsub-emulator"

    def __init__(self, port: int = 0):
        super().__init__(port)
        self.host = f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        launcher = launcher_path()
        if launcher is None:
            raise RuntimeError("the Pub/Sub emulator is not installed (gcloud component pubsub-emulator)")
        return [str(launcher), "--host=127.0.0.1", f"--port={self.port}"]

    def environment(self) -> dict[str, str]:
        # On 2 cores the JVM's default C2 compiler and G1 collector threads take CPU from every other
        # component: the client compiler alone and the serial collector cut the emulator's CPU per message
        # by more than half in a burst (bench-local; bench/README.md). The launcher reads JAVA_OPTS.
        return {"JAVA_OPTS": os.environ.get("JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")}

    def ready_url(self) -> str:
        return f"http://{self.host}/"
