"""The operator CLI: `dicom-pipeline` / `python -m cli`."""

from .main import main

__all__ = ["main"]
