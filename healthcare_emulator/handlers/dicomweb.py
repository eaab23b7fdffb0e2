"""DICOMweb (STOW-RS, QIDO-RS, WADO-RS) under .../dicomStores/{store}/dicomWeb/{path}."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import Unimplemented
from ..http import Request, Response

if TYPE_CHECKING:
    from ..app import Emulator


def handle(app: Emulator, request: Request, **params: str) -> Response:
    raise Unimplemented("DICOMweb is not emulated yet")
