"""Staging one object for import: read it, parse it, write its bytes to a staging file.

The same function runs in the emulator's threads and in import worker processes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from ..dicom.parsing import InvalidDicom, parse_instance
from ..store.dicom_store import StagedInstance
from .cloud_storage import GcsReader

# One object to stage: (object name, staging file path).
Job = tuple[str, str]
# What became of it: (object name, the staged instance or why the object failed).
Outcome = tuple[str, StagedInstance | str]


def stage_object(reader: GcsReader, bucket: str, name: str, staging_path: str, storage_class: str) -> Outcome:
    """Read, validate and parse one object, then write its bytes to `staging_path`.

    A file that cannot be read or parsed fails alone (its outcome is the reason); a failure to write
    the staging file is the store's problem and raises.
    """
    try:
        data = reader.read(bucket, name)
    except Exception as exc:  # the object may vanish or the read may fail; that file fails alone
        return name, f"could not read the object: {type(exc).__name__}: {exc}"
    return stage_data(name, data, staging_path, storage_class)


def stage_data(name: str, data: bytes, staging_path: str, storage_class: str) -> Outcome:
    """Validate and parse an object already read, then write its bytes to `staging_path` (see stage_object)."""
    if not data:
        return name, "not a DICOM file: the object is empty"
    try:
        parsed = parse_instance(data)
    except InvalidDicom as exc:
        return name, str(exc)
    with open(staging_path, "wb") as fh:
        fh.write(data)
    return name, StagedInstance(parsed, staging_path, storage_class)


def discard_jobs(jobs: Iterable[Job]) -> None:
    """Remove the staging files a failed task may have written."""
    for _, path in jobs:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def discard(outcomes: Iterable[Outcome]) -> None:
    """Remove the staging files of outcomes that will not be committed."""
    for _, item in outcomes:
        if isinstance(item, StagedInstance):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.staging_path)
