"""Bulk data values of stored instances for WADO-RS `…/bulkdata/{tag path}`. No HTTP.

A path is `7FE00010` or `00540016/0/00181072`: (sequence tag, item index) steps, then the element's tag.
Values come back little endian, as octet-stream bulk data is (PS3.18 8.7.3.3.2): OW/OF/OL/OD/OV values of a big
endian instance are swapped; encapsulated Pixel Data comes back as its encapsulated value, as stored.
"""

from __future__ import annotations

import io
import warnings

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from .pixels import EXPLICIT_LE, to_little_endian

_SWAP_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_PIXEL_DATA = 0x7FE00010


class BulkDataNotFound(LookupError):
    """The path names no binary value of the instance; the message says which step failed."""


def parse_path(segments: list[str]) -> tuple[list[tuple[int, int]], int]:
    """Path segments into (sequence tag, item index) steps and the last tag; ValueError names a bad piece."""
    text = "/".join(segments)
    tags, indexes = segments[0::2], segments[1::2]
    for piece in tags:
        if len(piece) != 8 or any(c not in "0123456789abcdefABCDEF" for c in piece):
            raise ValueError(f"invalid bulk data path {text!r}: {piece!r} is not a tag of 8 hex digits")
    for piece in indexes:
        if not piece.isdigit():
            raise ValueError(f"invalid bulk data path {text!r}: {piece!r} is not an item index")
    if len(tags) == len(indexes):
        raise ValueError(f"invalid bulk data path {text!r}: it must end with a tag")
    steps = [(int(tag, 16), int(index)) for tag, index in zip(tags, indexes, strict=False)]
    return steps, int(tags[-1], 16)


def value(data: bytes, steps: list[tuple[int, int]], last: int) -> tuple[bytes, str]:
    """The binary value at the path and the transfer syntax its bytes are in (the stored one for
    encapsulated Pixel Data, else explicit VR little endian)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
    current: Dataset = ds
    for tag, index in steps:
        if tag not in current or current[tag].VR != "SQ" or index >= len(current[tag].value):
            raise BulkDataNotFound(f"there is no item {index} of sequence {tag:08X}")
        current = current[tag].value[index]
    if last not in current:
        raise BulkDataNotFound(f"there is no element {last:08X}")
    element = current[last]
    if not isinstance(element.value, bytes):
        raise BulkDataNotFound(f"element {last:08X} holds no binary value")
    syntax = UID(ds.file_meta.get("TransferSyntaxUID") or EXPLICIT_LE)
    if element.tag == _PIXEL_DATA and not steps and syntax.is_encapsulated:
        return element.value, str(syntax)
    size = _SWAP_SIZES.get(element.VR)
    if size and not ds.original_encoding[1]:
        return to_little_endian(element.value, size), EXPLICIT_LE
    return element.value, EXPLICIT_LE
