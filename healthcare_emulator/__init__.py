"""A local emulator of the Cloud Healthcare API DICOM surface (datasets, DICOM stores, import, LROs, DICOMweb)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api.server import BANNER, EmulatorServer, create_server

__all__ = ["BANNER", "EmulatorServer", "create_server"]


def __getattr__(name: str) -> Any:
    # Lazy: `healthcare_emulator.lifecycle` (used by the local stack's processes) must not load the whole server.
    if name in __all__:
        from .api import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
