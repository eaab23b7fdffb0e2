"""A local emulator of the Cloud Healthcare API DICOM surface (datasets, DICOM stores, import, LROs, DICOMweb)."""

from .server import BANNER, EmulatorServer, create_server

__all__ = ["BANNER", "EmulatorServer", "create_server"]
