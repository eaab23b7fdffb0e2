"""dicomStores.export to Cloud Storage (gcsDestination)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import Unimplemented
from .names import DicomStoreName
from .operations import OperationContext

if TYPE_CHECKING:
    from .app import Emulator


def export_job(app: Emulator, store: DicomStoreName, store_id: int, destination: dict[str, Any],
               filter_uri: str | None) -> Callable[[OperationContext], None]:
    """Validate the destination now (InvalidArgument) and return the operation's job."""
    raise Unimplemented("dicomStores.export to Cloud Storage (gcsDestination) is not emulated yet")
