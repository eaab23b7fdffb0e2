"""Serving the console: uvicorn in the foreground (`dicom-pipeline console`) or on a thread (tests, bench)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn

from .app import create_app
from .settings import Settings


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8088) -> None:
    # No access log: request paths carry UIDs and search terms (PatientID); the app logs route names instead.
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConsoleServer:
    """The console on a free loopback port in a background thread: `with ConsoleServer(settings) as c: c.url`."""

    def __init__(self, settings: Settings, **app_options: object):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings, **app_options), host="127.0.0.1", port=self.port,  # type: ignore[arg-type]
                                access_log=False, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="console", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
