"""Pixel work for exports and DICOMweb retrieval: transcode Part-10 instances, render frames to JPEG/PNG (with a
viewport), cut frames in any transfer syntax written here. No HTTP, no GCS: exports and WADO-RS share this module.

Decoding and encoding go through pydicom's pixel handlers (pylibjpeg-libjpeg/-openjpeg/-rle, pyjpegls, Pillow),
except JPEG baseline encoding, which pydicom 3.0 lacks and Pillow does here. Every public function takes the
stored Part-10 bytes and raises PixelError, with a reason a user can act on, for what cannot be done (no pixel
data to render, a codec that cannot decode the stored data, an encoder that cannot take these pixels).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filewriter import dcmwrite
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, compress, get_decoder, pack_bits
from pydicom.uid import UID
from pydicom.valuerep import VR

# pydicom logs invalid values verbatim (PHI risk in our logs): keep it quiet, as dicom.py does.
logging.getLogger("pydicom").setLevel(logging.ERROR)

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

# What transcode() can write: native syntaxes (pixel data re-laid as little endian) and the encapsulated ones a
# maintained encoder exists for here. Order is the order error messages list them in.
TRANSCODE_TARGETS: tuple[str, ...] = (
    EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, RLE_LOSSLESS, JPEG_BASELINE, JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS,
    J2K_LOSSLESS, J2K,
)
RENDER_FORMATS = ("jpeg", "png")
# Transfer syntaxes the real API writes (exports, retrieval) that no encoder here can: their names.
NOT_EMULATED_TARGETS = {
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
    "1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
    "1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
}

# Lossy settings: our choices, the real API documents none.
JPEG_QUALITY = 90  # Pillow quality for JPEG baseline transcoding and rendered JPEG frames
PNG_COMPRESS_LEVEL = 1  # zlib level: far faster than Pillow's default 6, somewhat larger files (bench/export_png.py)
J2K_COMPRESSION_RATIO = 10.0  # JPEG 2000 (4.91): one quality layer at 10:1
JPEG_LS_NEAR_ERROR = 2  # JPEG-LS near-lossless (4.81): NEAR parameter, max absolute error per sample
_LOSSY_METHODS = {JPEG_BASELINE: "ISO_10918_1", JPEG_LS_NEAR_LOSSLESS: "ISO_14495_1", J2K: "ISO_15444_1"}

_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = (_PIXEL_DATA, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float Pixel Data, Double Float Pixel Data
# pylibjpeg-openjpeg encodes with OpenJPEG's default 6 resolutions (5 DWT levels): smaller images fail there.
_J2K_LEVELS = 5
_J2K_MIN_SIZE = 2**_J2K_LEVELS
_MESSAGE_LIMIT = 400  # characters of a codec's error kept in a reason
_SWAP_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}  # binary VRs whose bytes depend on endianness
AS_STORED = "*"
MAX_VIEWPORT_SIDE = 10_000  # the real API's limit for rendered images with a viewport (reference §9)

# pylibjpeg-openjpeg (JPEG 2000 and HTJ2K, both directions) is not thread-safe: its C logging helper (py_log in
# lib/interface/utils.c, 2.6.0) keeps the message in static PyObject pointers and calls Python's logging in
# between, where the GIL can pass to another thread in the codec; the two then free each other's objects and the
# process dies (SIGSEGV, issue 17). Every use of that codec here holds this lock, so its logging never runs twice
# at once. The encoder never released the GIL, so serialising it costs no parallelism.
_OPENJPEG_LOCK = threading.RLock()
_OPENJPEG_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
})


class PixelError(ValueError):
    """What cannot be done with an instance's pixels (or their absence); the message says why."""


class FrameNotFound(PixelError):
    """A frame number beyond the instance's frames."""


class NoPixelData(PixelError):
    """The instance has no pixel data (SR, RT Plan…), so no frames and no image."""


class InvalidViewport(PixelError):
    """A viewport that is malformed, too large, or whose source region misses the image."""


@dataclass(frozen=True)
class Viewport:
    """PS3.18 8.3.5.1.3 `viewport=vw,vh[,sx,sy,sw,sh]`: a source region scaled to fit vw x vh, aspect kept."""

    width: int
    height: int
    x: float = 0.0
    y: float = 0.0
    region_width: float | None = None  # None: to the right edge; negative: flipped horizontally
    region_height: float | None = None  # None: to the bottom edge; negative: flipped vertically

    @classmethod
    def parse(cls, text: str) -> Viewport:
        """`vw,vh` or `vw,vh,sx,sy,sw,sh`; anything else raises PixelError naming the value."""
        pieces = [piece.strip() for piece in text.split(",")]
        usage = "use viewport=vw,vh or viewport=vw,vh,sx,sy,sw,sh (PS3.18 8.3.5.1.3)"
        if len(pieces) not in (2, 6):
            raise InvalidViewport(f"invalid viewport {text!r}: {usage}")
        try:
            width, height = int(pieces[0]), int(pieces[1])
            x, y = (float(p) if p else 0.0 for p in pieces[2:4]) if len(pieces) == 6 else (0.0, 0.0)
            sw, sh = (float(p) if p else None for p in pieces[4:6]) if len(pieces) == 6 else (None, None)
        except ValueError:
            raise InvalidViewport(f"invalid viewport {text!r}: vw and vh are whole numbers, the region numbers;"
                             f" {usage}") from None
        if not (0 < width <= MAX_VIEWPORT_SIDE and 0 < height <= MAX_VIEWPORT_SIDE):
            raise InvalidViewport(f"invalid viewport {text!r}: vw and vh must be between 1 and {MAX_VIEWPORT_SIDE}")
        if x < 0 or y < 0 or sw == 0 or sh == 0 or not all(math.isfinite(v) for v in (x, y, sw or 1, sh or 1)):
            raise InvalidViewport(f"invalid viewport {text!r}: sx and sy must be >= 0 and sw, sh non-zero")
        return cls(width, height, x, y, sw, sh)


_Result = TypeVar("_Result")


def _quiet(function: Callable[..., _Result]) -> Callable[..., _Result]:
    """Silence pydicom's warnings about odd values: stored instances were accepted as they are."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> _Result:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return function(*args, **kwargs)

    return wrapper


# --- public API ------------------------------------------------------------------------------------


@_quiet
def transcode(data: bytes, transfer_syntax: str) -> bytes:
    """The instance re-encoded in `transfer_syntax`; unchanged bytes when it is already stored that way.

    The data set keeps every attribute and its UIDs (no new SOP Instance UID). Compressed or big endian pixel
    data is decoded first, colour as RGB (YBR JPEG data is converted, as dcmdjpeg does); lossy targets add
    Lossy Image Compression attributes (PS3.3 C.7.6.1.1.5). An instance without pixel data is rewritten in the
    requested syntax, its data set encoded as explicit VR little endian as encapsulated syntaxes prescribe.
    """
    target = UID(transfer_syntax)
    if target not in TRANSCODE_TARGETS:
        raise PixelError(f"transcoding to {_syntax_name(target)} is not supported; supported transfer syntaxes:"
                         f" {', '.join(TRANSCODE_TARGETS)}")
    ds = _read(data)
    source = _stored_syntax(ds)
    if source == target:
        return data  # why: re-encoding could only lose (lossy) or waste time
    element = _pixel_element(ds)
    _convert_elements(ds, swap=not source.is_little_endian)
    if element is not None and element.tag != _PIXEL_DATA and target.is_encapsulated:
        raise PixelError(f"{element.name} cannot be encapsulated: {_syntax_name(target)} only encodes"
                         " integer Pixel Data; use a native transfer syntax")
    if element is not None and element.tag == _PIXEL_DATA:
        with _codec_lock(source, target):
            if target.is_encapsulated:
                frames, info = _decode(ds, source)
                _set_image_pixel(ds, info)
                _encode(ds, source, target, frames)
            elif source.is_encapsulated or not source.is_little_endian:
                frames, info = _decode(ds, source)
                _set_native_pixel_data(ds, frames, info)
            # else: native little endian to native little endian; the pixel bytes stay as they are
    ds.file_meta.TransferSyntaxUID = target
    return _write(ds, target)


@_quiet
def render(data: bytes, image_format: str, numbers: list[int] | None = None,
           viewport: Viewport | None = None) -> list[bytes]:
    """Frames `numbers` (1-based; every frame when None) as 8-bit JPEG or PNG images ("jpeg" or "png"), in order.

    Grayscale: Modality LUT (rescale slope/intercept, or a Modality LUT Sequence), then VOI (first window
    center/width with its VOI LUT Function, else a VOI LUT Sequence, else the frame's min/max), then
    MONOCHROME1 inversion. Colour: YBR converted to RGB, palette colour looked up, samples scaled to 8 bits.
    Enhanced multi-frame instances take these attributes from their functional groups when not top-level.
    A viewport then crops (and flips) the source region and scales it to fit, keeping its aspect ratio.
    """
    image_format = image_format.lower()
    if image_format not in RENDER_FORMATS:
        raise PixelError(f"cannot render as {image_format!r}: formats are {', '.join(RENDER_FORMATS)}")
    ds = _read(data)
    element = _pixel_element(ds)
    if element is None:
        raise NoPixelData(f"the instance has no pixel data ({_sop_class_name(ds)}), so there is no image to render"
                         f" as {image_format.upper()}")
    source = _stored_syntax(ds)
    indexes = _frame_indexes(ds, numbers)
    images = []
    for index, frame in zip(indexes, _iter_frames(ds, source, indexes), strict=True):
        try:
            pixels = _to_8bit(ds, frame, index)
        except PixelError:
            raise
        except Exception as exc:  # a malformed LUT or attribute: this instance fails alone
            raise PixelError(f"cannot render frame {index + 1}: {_one_line(exc)}") from None
        images.append(_encode_image(pixels, image_format, viewport))
    return images


@_quiet
def frames(data: bytes, transfer_syntax: str, numbers: list[int] | None = None) -> tuple[list[bytes], str]:
    """Frames `numbers` (1-based; all when None) and the transfer syntax they are in.

    `transfer_syntax`: "*" = as stored (compressed frames stay compressed, a frame's fragments joined; native
    data as for explicit VR little endian); explicit VR little endian = uncompressed, little endian, as
    octet-stream frames are (native YBR_FULL_422 keeps its subsampled layout, compressed data is decoded with
    colour as RGB, 1-bit frames that do not start on a byte are re-packed from bit 0); any encapsulated
    syntax transcode() writes = the instance transcoded, then its frames.
    """
    ds = _read(data)
    element = _require_pixels(ds, "frames")
    source = _stored_syntax(ds)
    indexes = _frame_indexes(ds, numbers)
    target = UID(transfer_syntax) if transfer_syntax != AS_STORED else source
    if transfer_syntax == AS_STORED and not source.is_encapsulated:
        target = UID(EXPLICIT_LE)
    if target.is_encapsulated and target != source:
        return frames(transcode(data, target), AS_STORED, numbers)
    if target.is_encapsulated:
        return _encapsulated_frames(ds, element, indexes), str(target)
    if target != EXPLICIT_LE:
        raise PixelError(f"frames are served uncompressed as {_syntax_name(EXPLICIT_LE)} or encapsulated,"
                         f" not as {_syntax_name(target)}")
    return _native_frames(ds, element, source, indexes), EXPLICIT_LE


def _frame_indexes(ds: Dataset, numbers: list[int] | None) -> list[int]:
    """0-based indexes of 1-based frame `numbers` (every frame when None); FrameNotFound past the last."""
    count = _number_of_frames(ds)
    if numbers is None:
        return list(range(count))
    for number in numbers:
        if not 1 <= number <= count:
            raise FrameNotFound(f"frame {number} does not exist: the instance has {count} frame(s)")
    return [number - 1 for number in numbers]


def _encapsulated_frames(ds: Dataset, element: DataElement, indexes: list[int]) -> list[bytes]:
    count = _number_of_frames(ds)
    try:
        found = [bytes(frame) for frame in generate_frames(element.value, number_of_frames=count)]
    except Exception as exc:
        raise PixelError(f"cannot split the encapsulated pixel data into {count} frame(s):"
                         f" {_one_line(exc)}") from None
    if len(found) != count:
        raise PixelError(f"the encapsulated pixel data holds {len(found)} frame(s), not NumberOfFrames={count}")
    return [found[i] for i in indexes]


def _native_frames(ds: Dataset, element: DataElement, source: UID, indexes: list[int]) -> list[bytes]:
    """Uncompressed frames, little endian: cut from native little endian data, else decoded."""
    count = _number_of_frames(ds)
    bits = int(ds.get("BitsAllocated") or 8)
    if not source.is_encapsulated and source.is_little_endian:
        value = element.value
        if element.tag == _PIXEL_DATA and bits == 1:
            return _one_bit_frames(ds, value, count, indexes)
        size = _native_frame_length(ds, element.tag)
        if size == 0 or len(value) < size * count:
            raise PixelError(f"the pixel data holds {len(value)} bytes, fewer than {count} frame(s) of {size}")
        return [bytes(value[i * size:(i + 1) * size]) for i in indexes]
    if element.tag != _PIXEL_DATA:  # float pixel data stored big endian
        _convert_elements(ds, swap=True)
        size = _native_frame_length(ds, element.tag)
        return [bytes(ds[element.tag].value[i * size:(i + 1) * size]) for i in indexes]
    return [_frame_bytes(frame, bits) for frame in _iter_frames(ds, source, indexes)]



# --- reading and writing ---------------------------------------------------------------------------


def _read(data: bytes) -> Dataset:
    try:
        return dcmread(io.BytesIO(data))
    except Exception as exc:  # stored instances were validated; this is corruption on disk
        raise PixelError(f"cannot read the stored instance: {_one_line(exc)}") from None


def _stored_syntax(ds: Dataset) -> UID:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not syntax:
        raise PixelError("the stored instance has no TransferSyntaxUID in its file meta information")
    return UID(syntax)


def _write(ds: Dataset, target: UID) -> bytes:
    out = io.BytesIO()
    try:
        dcmwrite(out, ds, enforce_file_format=True)
    except Exception as exc:
        raise PixelError(f"cannot write the instance as {_syntax_name(target)}: {_one_line(exc)}") from None
    return out.getvalue()


def _convert_elements(ds: Dataset, swap: bool) -> None:
    """Parse every element now, so the writer re-encodes values instead of copying raw bytes.

    Why: pydicom writes unparsed elements as read, which breaks when the encoding changes (and files that
    say explicit VR but are implicit carry no VR at all). With `swap` (a big endian source), OW/OF/OL/OD/OV
    values are byte-swapped, as pydicom writes their bytes as they are; Pixel Data is decoded separately.
    """
    for element in ds.iterall():
        size = _SWAP_SIZES.get(element.VR) if swap else None
        if size and element.tag != _PIXEL_DATA and isinstance(element.value, bytes):
            element.value = to_little_endian(element.value, size)


def to_little_endian(value: bytes, size: int) -> bytes:
    """Big endian words of `size` bytes swapped to little endian (a trailing partial word is kept as is)."""
    usable = len(value) - len(value) % size
    array = np.frombuffer(value[:usable], dtype=f">u{size}").astype(f"<u{size}")
    return array.tobytes() + value[usable:]


# --- decoding ----------------------------------------------------------------------------------------


def _pixel_element(ds: Dataset) -> DataElement | None:
    for tag in _PIXEL_TAGS:
        if tag in ds and ds[tag].value:
            return ds[tag]
    return None


def _require_pixels(ds: Dataset, what: str) -> DataElement:
    element = _pixel_element(ds)
    if element is None:
        raise NoPixelData(f"the instance has no pixel data ({_sop_class_name(ds)}), so it has no {what}")
    return element


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _iter_frames(ds: Dataset, source: UID, indexes: list[int] | None = None) -> Iterator[np.ndarray]:
    """Decoded frames `indexes` (0-based; all when None), colour as RGB; decoding errors become PixelError."""
    decoder = get_decoder(source) if _has_decoder(source) else None
    if decoder is None or not decoder.is_available:
        raise PixelError(f"no decoder here for pixel data stored as {_syntax_name(source)}")
    iterator = decoder.iter_array(ds, indices=indexes, as_rgb=True)
    for index in indexes if indexes is not None else range(_number_of_frames(ds)):
        try:
            with _codec_lock(source):
                frame, _ = next(iterator)
        except StopIteration:
            raise PixelError(f"the pixel data ends before frame {index + 1}") from None
        except Exception as exc:
            raise PixelError(f"cannot decode frame {index + 1} of the {_syntax_name(source)} pixel data:"
                             f" {_one_line(exc)}") from None
        yield frame


def _codec_lock(*syntaxes: str) -> contextlib.AbstractContextManager[Any]:
    """The OpenJPEG lock when any of `syntaxes` goes through pylibjpeg-openjpeg, else nothing to hold."""
    return _OPENJPEG_LOCK if any(s in _OPENJPEG_SYNTAXES for s in syntaxes) else contextlib.nullcontext()


def _has_decoder(syntax: UID) -> bool:
    try:
        get_decoder(syntax)
    except NotImplementedError:
        return False
    return True


def _decode(ds: Dataset, source: UID) -> tuple[list[np.ndarray], dict[str, Any]]:
    """All frames decoded, plus the image pixel description that fits them (e.g. RGB after YBR)."""
    decoder = get_decoder(source) if _has_decoder(source) else None
    if decoder is None or not decoder.is_available:
        raise PixelError(f"no decoder here for pixel data stored as {_syntax_name(source)}")
    frames: list[np.ndarray] = []
    info: dict[str, Any] = {}
    try:
        for frame, frame_info in decoder.iter_array(ds, as_rgb=True):
            frames.append(frame)
            info = frame_info
    except Exception as exc:
        raise PixelError(f"cannot decode the {_syntax_name(source)} pixel data: {_one_line(exc)}") from None
    if not frames:
        raise PixelError("the pixel data holds no frames")
    return frames, info


def _frame_bytes(frame: np.ndarray, bits_allocated: int) -> bytes:
    """One decoded frame as native little endian bytes (1-bit frames packed)."""
    if bits_allocated == 1:
        return pack_bits(frame.astype(np.uint8), pad=False)
    return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def _set_image_pixel(ds: Dataset, info: dict[str, Any]) -> None:
    """Decoded arrays are interleaved (planar configuration 0) in the photometric interpretation `info` says."""
    if info.get("photometric_interpretation"):
        ds.PhotometricInterpretation = info["photometric_interpretation"]
    if int(ds.get("SamplesPerPixel") or 1) > 1:
        ds.PlanarConfiguration = 0


def _set_native_pixel_data(ds: Dataset, frames: list[np.ndarray], info: dict[str, Any]) -> None:
    bits = int(ds.BitsAllocated)
    if bits == 1:
        value = pack_bits(np.stack(frames).astype(np.uint8), pad=False)
    else:
        value = b"".join(_frame_bytes(frame, bits) for frame in frames)
    if len(value) >= 2**32 - 2:
        raise PixelError("the uncompressed pixel data would exceed the 4 GB a DICOM value can hold")
    if len(value) % 2:
        value += b"\0"
    _set_image_pixel(ds, info)
    ds.PixelData = value
    element = ds["PixelData"]
    element.VR = VR.OB if bits <= 8 else VR.OW
    element.is_undefined_length = False
    _drop_offset_tables(ds)


def _drop_offset_tables(ds: Dataset) -> None:
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            delattr(ds, keyword)


# --- encoding ----------------------------------------------------------------------------------------


def _encode(ds: Dataset, source: UID, target: UID, frames: list[np.ndarray]) -> None:
    original = sum(frame.nbytes for frame in frames)
    _drop_offset_tables(ds)
    if target == JPEG_BASELINE:
        encoded = _encode_jpeg_baseline(ds, frames)
        ds.PixelData = encapsulate(encoded)
        element = ds["PixelData"]
        element.VR = VR.OB
        element.is_undefined_length = True
    else:
        options: dict[str, Any] = {}
        if target == JPEG_LS_NEAR_LOSSLESS:
            options["jls_error"] = JPEG_LS_NEAR_ERROR
        elif target == J2K:
            options["j2k_cr"] = [J2K_COMPRESSION_RATIO]
        if target in (J2K_LOSSLESS, J2K) and min(frames[0].shape[:2]) < _J2K_MIN_SIZE:
            raise PixelError(f"cannot encode the pixel data as {_syntax_name(target)}: the OpenJPEG encoder here"
                             f" uses {_J2K_LEVELS} decomposition levels, so rows and columns must be at least"
                             f" {_J2K_MIN_SIZE}; this image is {frames[0].shape[0]}x{frames[0].shape[1]}")
        array = np.stack(frames) if len(frames) > 1 else frames[0]
        try:
            compress(ds, target, array, generate_instance_uid=False, **options)
        except Exception as exc:
            raise PixelError(f"cannot encode the pixel data as {_syntax_name(target)}: {_one_line(exc)}") from None
    if target in _LOSSY_METHODS:
        compressed = len(ds.PixelData)
        _mark_lossy(ds, _LOSSY_METHODS[target], original / compressed if compressed else 0.0)


def _encode_jpeg_baseline(ds: Dataset, frames: list[np.ndarray]) -> list[bytes]:
    """JPEG baseline (process 1) with Pillow: 8-bit unsigned grayscale, or RGB stored as YCbCr 4:2:2."""
    from PIL import Image

    bits_allocated, bits_stored = int(ds.BitsAllocated), int(ds.get("BitsStored") or ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if bits_allocated != 8 or bits_stored != 8 or signed:
        raise PixelError(f"JPEG baseline ({JPEG_BASELINE}) holds 8-bit unsigned samples; this instance has"
                         f" BitsAllocated={bits_allocated}, BitsStored={bits_stored},"
                         f" PixelRepresentation={int(signed)}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB"):
        raise PixelError(f"JPEG baseline ({JPEG_BASELINE}) encodes MONOCHROME1/2 or RGB pixels, not"
                         f" {photometric or 'an unknown PhotometricInterpretation'}")
    encoded = []
    for frame in frames:
        out = io.BytesIO()
        # subsampling=1 is 4:2:2, which PS3.5 8.2.1 calls YBR_FULL_422; grayscale ignores it.
        Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(
            out, "JPEG", quality=JPEG_QUALITY, subsampling=1)
        encoded.append(out.getvalue())
    if photometric == "RGB":
        ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = JPEG_BASELINE
    return encoded


def _mark_lossy(ds: Dataset, method: str, ratio: float) -> None:
    """PS3.3 C.7.6.1.1.5: flag lossy compression and append this step's method and ratio to the history."""
    methods = _values(ds, "LossyImageCompressionMethod") if ds.get("LossyImageCompression") == "01" else []
    ratios = _values(ds, "LossyImageCompressionRatio") if methods else []
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = [*methods, method]
    ds.LossyImageCompressionRatio = [*ratios, f"{ratio:.4g}"[:16]]


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


# --- rendering ---------------------------------------------------------------------------------------


def _to_8bit(ds: Dataset, frame: np.ndarray, index: int) -> np.ndarray:
    if frame.ndim == 3:  # colour, already RGB
        return _scale_to_8bit(frame, int(ds.get("BitsStored") or ds.BitsAllocated))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        return _scale_to_8bit(rgb, 16 if rgb.dtype.itemsize > 1 else 8)
    if frame.dtype.kind in "iu" and frame.dtype.itemsize <= 2 and "ModalityLUTSequence" not in ds and frame.size:
        # Why: the pipeline is per value, so run it once over the frame's value range and look pixels up in
        # that table (5x faster on a 512x512 CT than float arithmetic per pixel). The range's ends are the
        # frame's min and max and the rescale is linear, so min/max stretching gives the same result.
        low, high = int(frame.min()), int(frame.max())
        size = 2 ** (8 * frame.dtype.itemsize)
        domain = np.arange(low, high + 1, dtype=np.int64)
        table = np.zeros(size, dtype=np.uint8)
        table[domain & (size - 1)] = _grayscale_to_8bit(ds, domain, index, photometric)  # signed wraps around
        return table[frame.view(f"u{frame.dtype.itemsize}")]
    return _grayscale_to_8bit(ds, frame, index, photometric)


def _grayscale_to_8bit(ds: Dataset, frame: np.ndarray, index: int, photometric: str) -> np.ndarray:
    values = _modality(ds, frame, index)
    window = _window(ds, index)
    if window is not None:
        center, width, function = window
        out = _apply_window(values, center, width, function)
    elif "VOILUTSequence" in ds and "ModalityLUTSequence" not in ds:
        lut = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        out = lut.astype(np.float64) * (255.0 / (2 ** int(descriptor[2]) - 1))
    else:
        out = _min_max(values)
    if photometric == "MONOCHROME1":
        out = 255.0 - out
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _scale_to_8bit(rgb: np.ndarray, bits: int) -> np.ndarray:
    if rgb.dtype == np.uint8 and bits <= 8:
        return rgb
    top = float(2 ** min(bits, 32) - 1)
    return np.clip(np.rint(rgb.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _modality(ds: Dataset, frame: np.ndarray, index: int) -> np.ndarray:
    """Stored values to modality values: a Modality LUT Sequence, else rescale slope/intercept."""
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(frame, ds).astype(np.float64)
    slope = _attribute(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _attribute(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
    values = frame.astype(np.float64)
    if slope is not None and float(slope) != 1.0:
        values = values * float(slope)
    if intercept is not None and float(intercept) != 0.0:
        values = values + float(intercept)
    return values


def _window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    """The first window center/width (and VOI LUT Function) that applies to frame `index`, if usable."""
    center = _attribute(ds, index, "FrameVOILUTSequence", "WindowCenter")
    width = _attribute(ds, index, "FrameVOILUTSequence", "WindowWidth")
    if center is None or width is None:
        return None
    try:
        center_value, width_value = float(_first(center)), float(_first(width))
    except (TypeError, ValueError):
        return None
    function = str(_attribute(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").strip().upper()
    if not (math.isfinite(center_value) and math.isfinite(width_value)) or width_value <= 0:
        return None
    if function == "LINEAR" and width_value < 1:
        return None
    return center_value, width_value, function


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT and SIGMOID windows onto 0..255."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip(((values - center) / width + 0.5) * 255.0, 0.0, 255.0)
    if width == 1:
        return np.where(values > center - 0.5, 255.0, 0.0)
    return np.clip(((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0, 0.0, 255.0)


def _min_max(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return np.zeros(values.shape)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:  # a flat frame: black, as there is no contrast to show
        return np.zeros(values.shape)
    return np.nan_to_num((values - low) * (255.0 / (high - low)))


def _attribute(ds: Dataset, index: int, group: str, keyword: str) -> Any:
    """A top-level attribute, else the per-frame functional group's, else the shared functional group's."""
    if keyword in ds and ds[keyword].value not in (None, ""):
        return ds[keyword].value
    for groups_keyword, position in (("PerFrameFunctionalGroupsSequence", index),
                                     ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_keyword)
        if not groups or position >= len(groups):
            continue
        items = groups[position].get(group)
        if items and keyword in items[0] and items[0][keyword].value not in (None, ""):
            return items[0][keyword].value
    return None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, MultiValue | list | tuple) and len(value) else value


def _encode_image(pixels: np.ndarray, image_format: str, viewport: Viewport | None = None) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if viewport is not None:
        image = _fit(image, viewport)
    if image_format == "jpeg":
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def _fit(image: Any, viewport: Viewport) -> Any:
    """Crop the viewport's source region (flipped when its width/height is negative), scale it into vw x vh."""
    from PIL import Image

    columns, rows = image.size
    width = viewport.region_width if viewport.region_width is not None else columns - viewport.x
    height = viewport.region_height if viewport.region_height is not None else rows - viewport.y
    left, right = sorted((viewport.x, viewport.x + width))
    top, bottom = sorted((viewport.y, viewport.y + height))
    box = (max(0.0, left), max(0.0, top), min(float(columns), right), min(float(rows), bottom))
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise InvalidViewport(f"the viewport's source region ({viewport.x:g},{viewport.y:g} {width:g}x{height:g}) lies"
                         f" outside the {columns}x{rows} image")
    region_width, region_height = box[2] - box[0], box[3] - box[1]
    scale = min(viewport.width / region_width, viewport.height / region_height)
    size = (max(1, round(region_width * scale)), max(1, round(region_height * scale)))
    # reducing_gap: Pillow first shrinks by whole factors, much faster than one resample for thumbnails
    image = image.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    if width < 0:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if height < 0:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return image


# --- frames of native data ---------------------------------------------------------------------------


def _native_frame_length(ds: Dataset, tag: int) -> int:
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if tag != _PIXEL_DATA:
        return rows * columns * samples * (4 if tag == 0x7FE00008 else 8)
    bytes_per_sample = int(ds.get("BitsAllocated") or 8) // 8
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        return rows * columns * 2 * bytes_per_sample  # two chroma samples per pixel pair (PS3.3 C.7.6.3.1.2)
    return rows * columns * samples * bytes_per_sample


def _one_bit_frames(ds: Dataset, value: bytes, count: int, indexes: list[int]) -> list[bytes]:
    """1-bit frames: cut at byte boundaries when frames fill whole bytes, else re-packed to start at bit 0."""
    pixels = int(ds.get("Rows") or 0) * int(ds.get("Columns") or 0) * int(ds.get("SamplesPerPixel") or 1)
    if pixels % 8 == 0:
        size = pixels // 8
        if len(value) < size * count:
            raise PixelError(f"the 1-bit pixel data holds {len(value)} bytes, fewer than {count} frame(s) of {size}")
        return [bytes(value[i * size:(i + 1) * size]) for i in indexes]
    bits = np.unpackbits(np.frombuffer(value, dtype=np.uint8), bitorder="little")
    if bits.size < pixels * count:
        raise PixelError(f"the 1-bit pixel data holds {bits.size} bits, fewer than {count} frame(s) of {pixels}")
    return [np.packbits(bits[i * pixels:(i + 1) * pixels], bitorder="little").tobytes() for i in indexes]


# --- names -------------------------------------------------------------------------------------------


def _syntax_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    if not uid:
        return "no SOP Class UID"
    name = UID(uid).name
    return f"{name}, {uid}" if name and name != uid else f"SOP Class {uid}"


def _one_line(exc: BaseException) -> str:
    """An exception as one short log line (pydicom appends whole tracebacks to some messages)."""
    text = str(exc).split("Traceback (most recent call last)")[0]
    text = " ".join(f"{type(exc).__name__}: {text}".split())
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT - 1] + "…"
