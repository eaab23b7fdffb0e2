"""Process lifecycle shared by the emulator's and the local stack's servers: liveness, and serving until SIGTERM."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether a process exists; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM (from `down`, a supervisor, kill) unwinds like Ctrl-C, so with-blocks and finally clauses run."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def serve_until_stopped(serve: Callable[[], object], stop: Callable[[], object]) -> int:
    """Run `serve` until Ctrl-C or SIGTERM, then `stop`; the exit code of a clean stop (0)."""
    stop_on_sigterm()
    try:
        serve()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0
