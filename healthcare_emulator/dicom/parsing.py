"""DICOM Part-10 parsing: validation and the DICOM JSON model (PS3.18 F.2), computed once at store time.

The stored metadata is DICOM JSON with file meta (group 0002) included; binary values longer than
BULK_THRESHOLD are replaced by a relative ``BulkDataURI`` ("bulkdata/<tag path>") that the DICOMweb
layer makes absolute. pydicom's ``Dataset.to_json_dict`` converts ~360 files/s here, so common VRs are
decoded straight from pydicom's raw elements; everything unusual goes through pydicom's own conversion.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from ..names import is_valid_uid

# pydicom logs invalid values verbatim (a malformed PatientName would be PHI in our logs): keep it quiet.
logging.getLogger("pydicom").setLevel(logging.ERROR)

BULK_THRESHOLD = 1024  # bytes; larger binary values are served as BulkDataURI

_UNDEFINED_LENGTH = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_STRUCT_CODES = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "SV": "q", "UV": "Q", "FL": "f", "FD": "d"}
_STRUCT_SIZES = {"H": 2, "h": 2, "I": 4, "i": 4, "q": 8, "Q": 8, "f": 4, "d": 8}
# Text VRs decoded with the dataset's character set; all other string VRs are plain ASCII.
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
# VRs whose value is never split on backslash.
_SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})
# VRs whose leading spaces are insignificant too (PS3.5 6.2).
_STRIP_BOTH_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "SH", "LO", "DS", "IS"})
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR", "SH", "LO", "ST", "LT", "UC", "UT"})
# Character sets that decode with one Python codec and no escape sequences.
_SIMPLE_CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

TAG_STUDY_UID = "0020000D"
TAG_SERIES_UID = "0020000E"
TAG_SOP_UID = "00080018"
TAG_SOP_CLASS_UID = "00080016"
TAG_TRANSFER_SYNTAX = "00020010"
TAG_MEDIA_STORAGE_SOP_CLASS = "00020002"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR
# Explicit VR elements with a 4-byte length (after 2 reserved bytes); the others have a 2-byte length.
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
                              b"UV"})


class InvalidDicom(ValueError):
    """The bytes are not a DICOM Part-10 instance the store can accept; the message says why."""


@dataclass(frozen=True)
class ParsedInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    sha256: str
    size: int
    metadata: dict[str, Any]
    # `metadata` as compact JSON, filled by parse_instance so it is built once (treat metadata as read-only).
    metadata_text: str | None = field(default=None, repr=False, compare=False)
    # DS/IS values as written in the file, where the JSON number would not give the same text back (see
    # number_texts_json); BigQuery keeps the text, DICOMweb JSON the number.
    number_texts: dict[str, list[str | None]] = field(default_factory=dict, repr=False, compare=False)

    def metadata_json(self) -> str:
        if self.metadata_text is not None:
            return self.metadata_text
        return _compact_json(self.metadata)

    def number_texts_json(self) -> str:
        """The exact DS/IS texts as JSON, {element path: [text per value]}; "" when every number round-trips.

        An element path is the tag, with sequence items as ``SQTAG/index/TAG`` (as in bulk data paths).
        """
        return _compact_json(self.number_texts) if self.number_texts else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Import workers send instances to the parent process: the JSON text unpickles much faster than
        # the nested dicts it encodes (one json.loads instead of thousands of small objects).
        return (_parsed_from_text, (self.study_uid, self.series_uid, self.sop_uid, self.sop_class_uid,
                                    self.transfer_syntax_uid, self.sha256, self.size, self.metadata_json(),
                                    self.number_texts))


def _compact_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)


def _parsed_from_text(study_uid: str, series_uid: str, sop_uid: str, sop_class_uid: str, transfer_syntax_uid: str,
                      sha256: str, size: int, metadata_text: str,
                      number_texts: dict[str, list[str | None]]) -> ParsedInstance:
    return ParsedInstance(study_uid, series_uid, sop_uid, sop_class_uid, transfer_syntax_uid, sha256, size,
                          json.loads(metadata_text), metadata_text, number_texts)


def with_number_texts(metadata: dict[str, Any], number_texts: dict[str, list[str | None]]) -> dict[str, Any]:
    """`metadata` (changed in place) with the DS/IS values of `number_texts` as their exact text."""
    for path, texts in number_texts.items():
        *items, key = path.split("/")
        elements = metadata
        for sequence, index in zip(items[::2], items[1::2], strict=True):
            elements = elements[sequence]["Value"][int(index)]
        elements[key]["Value"] = texts
    return metadata


def parse_instance(data: bytes) -> ParsedInstance:
    """Validate a Part-10 file and compute its DICOM JSON metadata.

    Raises:
        InvalidDicom: not Part 10, unparsable, truncated, or missing a required UID.
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InvalidDicom("not a DICOM Part 10 file: the 'DICM' prefix is missing at byte 128")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
            transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", "") or "").strip("\0 ")
            if not transfer_syntax:
                _check_file_meta_complete(data)
                raise InvalidDicom("the file meta information has no TransferSyntaxUID (0002,0010)")
            number_texts: dict[str, list[str | None]] = {}
            metadata = _dataset_json(ds.file_meta, "", "latin_1", number_texts)
            metadata.update(_dataset_json(ds, "", _python_charset(ds), number_texts))
    except InvalidDicom:
        raise
    except InvalidDicomError as exc:
        raise InvalidDicom(f"not a valid DICOM file: {exc}") from None
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise InvalidDicom(f"unparsable DICOM data: {type(exc).__name__}: {exc}") from None

    if MEDIA_STORAGE_DIRECTORY in (first_value(metadata, TAG_MEDIA_STORAGE_SOP_CLASS),
                                   first_value(metadata, TAG_SOP_CLASS_UID)):
        raise InvalidDicom("a DICOMDIR (Media Storage Directory, SOP class 1.2.840.10008.1.3.10) is a file-set"
                           " index, not a composite instance: store the files it lists instead")
    uids = {}
    for tag, keyword in ((TAG_STUDY_UID, "StudyInstanceUID"), (TAG_SERIES_UID, "SeriesInstanceUID"),
                         (TAG_SOP_UID, "SOPInstanceUID")):
        value = first_value(metadata, tag)
        if not value:
            raise InvalidDicom(f"missing required attribute {keyword} ({tag[:4]},{tag[4:]})")
        if not isinstance(value, str) or not is_valid_uid(value):
            raise InvalidDicom(f"{keyword} ({tag[:4]},{tag[4:]}) is not a valid UID")
        uids[keyword] = value
    return ParsedInstance(
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        sop_uid=uids["SOPInstanceUID"],
        sop_class_uid=str(first_value(metadata, TAG_SOP_CLASS_UID) or ""),
        transfer_syntax_uid=transfer_syntax,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        metadata=metadata,
        metadata_text=_compact_json(metadata),
        number_texts=number_texts,
    )


def _check_file_meta_complete(data: bytes) -> None:
    """Raise InvalidDicom naming the element where the file meta (explicit VR little endian) is cut short.

    pydicom stops quietly at a truncated file meta element, which would otherwise be reported as a missing
    TransferSyntaxUID.
    """
    offset = 132
    while offset < len(data):
        if len(data) - offset < 4:
            raise InvalidDicom("truncated file: the file meta information is cut short inside an element's tag")
        group, element = struct.unpack_from("<HH", data, offset)
        if group != 2:
            return
        name = _element_name(0x00020000 | element)
        vr = data[offset + 4:offset + 6]
        long_length = vr in _LONG_LENGTH_VRS
        header = 12 if long_length else 8
        if len(data) - offset < header:
            raise InvalidDicom(f"truncated file: the file meta information is cut short inside {name}")
        length = struct.unpack_from("<I" if long_length else "<H", data, offset + (8 if long_length else 6))[0]
        if offset + header + length > len(data):
            raise InvalidDicom(f"truncated file: the file meta information is cut short inside {name}: it declares"
                               f" {length} bytes, {len(data) - offset - header} remain")
        offset += header + length


def _element_name(tag: int) -> str:
    keyword = dictionary_keyword(tag)
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})" if keyword else f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def first_value(metadata: dict[str, Any], tag: str) -> Any:
    values = metadata.get(tag, {}).get("Value")
    return values[0] if values else None


def _python_charset(ds: Dataset) -> str | None:
    """The single codec for the dataset's text, or None when pydicom must decode (ISO 2022 etc.)."""
    raw = ds._dict.get(0x00080005)
    if raw is None:
        return "latin_1"
    if isinstance(raw, RawDataElement):
        value = (raw.value or b"").decode("latin_1").strip("\0 ")
    else:
        value = raw.value if isinstance(raw.value, str) else "\\".join(raw.value or [])
    return _SIMPLE_CHARSETS.get(value.strip())


def _dataset_json(ds: Dataset, path: str, charset: str | None,
                  texts: dict[str, list[str | None]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Binary values of big-endian data sets are swapped to little endian for InlineBinary.
    big_endian = getattr(ds, "original_encoding", (None, True))[1] is False
    for tag in sorted(ds._dict):
        if tag & 0xFFFF == 0:
            continue  # group lengths are not part of the JSON model (PS3.18 F.2.2)
        elem = ds._dict[tag]
        key = f"{tag:08X}"
        elem_path = f"{path}{key}"
        if isinstance(elem, RawDataElement):
            if elem.length != _UNDEFINED_LENGTH and elem.value is not None and len(elem.value) != elem.length:
                raise InvalidDicom(f"truncated file: element ({key[:4]},{key[4:]}) is cut short")
            if elem.VR is not None and elem.is_little_endian:
                fast = _raw_json(elem, elem_path, charset, texts)
                if fast is not None:
                    out[key] = _encapsulated_as_ob(tag, elem.length, fast)
                    continue
        converted = ds[tag]
        out[key] = _encapsulated_as_ob(tag, _UNDEFINED_LENGTH if converted.is_undefined_length else 0,
                                       _element_json(converted, elem_path, charset, texts, big_endian))
    return out


def _encapsulated_as_ob(tag: int, length: int, value: dict[str, Any]) -> dict[str, Any]:
    """Encapsulated (compressed) Pixel Data is OB whatever VR the file wrote (PS3.5 A.4)."""
    if tag == _PIXEL_DATA and length == _UNDEFINED_LENGTH:
        value["vr"] = "OB"
    return value


def _raw_json(raw: RawDataElement, path: str, charset: str | None,
              texts: dict[str, list[str | None]]) -> dict[str, Any] | None:
    """DICOM JSON for a raw little-endian element, or None to use pydicom's conversion."""
    vr = raw.VR
    value = raw.value
    if vr in ("SQ", "UN"):
        return None  # pydicom parses sequences and replaces UN by the dictionary VR where it knows the tag
    if not value:
        return {"vr": vr}
    if vr in _BINARY_VRS:
        return _binary_json(vr, value, path)
    code = _STRUCT_CODES.get(vr)
    if code is not None:
        size = _STRUCT_SIZES[code]
        if len(value) % size:
            raise InvalidDicom(f"element ({path[-8:-4]},{path[-4:]}) has a length that is not a multiple of {size}")
        numbers = list(struct.unpack(f"<{len(value) // size}{code}", value))
        if code in "fd":
            numbers = [n if math.isfinite(n) else None for n in numbers]
        return {"vr": vr, "Value": numbers}
    if vr == "AT":
        if len(value) % 4:
            return None
        pairs = struct.unpack(f"<{len(value) // 2}H", value)
        return {"vr": vr, "Value": [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]}
    if vr in _CHARSET_VRS:
        if charset is None:
            return None
        text = value.decode(charset, errors="replace")
    elif vr in _STRING_VRS or vr in ("DS", "IS"):
        text = value.decode("latin_1")
    else:
        return None
    return _text_json(vr, text, path, texts)


def _text_json(vr: str, text: str, path: str, texts: dict[str, list[str | None]]) -> dict[str, Any]:
    if vr in _SINGLE_VALUE_VRS:
        parts = [text.rstrip("\0 ")]
    else:
        parts = text.split("\\")
    if vr in _STRIP_BOTH_VRS:
        parts = [p.strip("\0 ") for p in parts]
    else:
        parts = [p.rstrip("\0 ") for p in parts]
    if len(parts) == 1 and not parts[0]:
        return {"vr": vr}
    if vr == "PN":
        values: list[Any] = [(_person_name_json(p) or None) if p else None for p in parts]
        if not any(values):
            return {"vr": vr}
    elif vr in ("IS", "DS"):
        values = _numbers(vr, parts, path, texts)
    else:
        values = [p if p else None for p in parts]
    return {"vr": vr, "Value": values}


def _numbers(vr: str, parts: list[str], path: str, texts: dict[str, list[str | None]]) -> list[Any]:
    """IS/DS values as JSON numbers; their texts go to `texts` when a number would not give them back."""
    values = [_number(p, int_only=vr == "IS") for p in parts]
    if any(isinstance(v, (int, float)) and repr(v) != p for p, v in zip(parts, values, strict=True)):
        texts[path] = [p or None for p in parts]
    return values


def _number(text: str, int_only: bool) -> Any:
    """IS/DS as JSON numbers; a malformed value stays a string rather than failing the instance."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    if int_only:
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _person_name_json(text: str) -> dict[str, str]:
    groups = text.split("=")
    out = {}
    for label, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        if group and group.strip("^ "):  # a name of only separators is empty
            out[label] = group
    return out


def _binary_json(vr: str, value: bytes, path: str) -> dict[str, Any]:
    if len(value) > BULK_THRESHOLD:
        return {"vr": vr, "BulkDataURI": f"bulkdata/{path}"}
    return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}


def _element_json(elem: DataElement, path: str, charset: str | None, texts: dict[str, list[str | None]],
                  big_endian: bool = False) -> dict[str, Any]:
    """DICOM JSON for an element pydicom has converted (sequences, implicit VR, big endian, ISO 2022)."""
    vr = elem.VR
    if vr in ("US or SS", "US or OW", "OB or OW", "US or SS or OW"):
        vr = "OW" if isinstance(elem.value, bytes) else "US"
    value = elem.value
    if value is None or (isinstance(value, (str, bytes, list, MultiValue, Sequence)) and len(value) == 0):
        return {"vr": vr}
    if vr == "SQ":
        items = []
        for index, item in enumerate(value):
            item_charset = _python_charset(item) if 0x00080005 in item._dict else charset
            items.append(_dataset_json(item, f"{path}/{index}/", item_charset, texts))
        return {"vr": "SQ", "Value": items}
    if vr in _BINARY_VRS or isinstance(value, bytes):
        raw = value if isinstance(value, bytes) else bytes(value)
        word = _WORD_SIZES.get(vr, 1)
        if big_endian and word > 1 and len(raw) <= BULK_THRESHOLD:
            raw = b"".join(raw[i:i + word][::-1] for i in range(0, len(raw), word))
        return _binary_json(vr if vr in _BINARY_VRS else "UN", raw, path)
    values = list(value) if isinstance(value, (list, MultiValue, tuple)) else [value]
    if vr == "PN":
        names = [_person_name_value(v) for v in values]
        return {"vr": vr, "Value": names} if any(names) else {"vr": vr}
    if vr == "AT":
        return {"vr": vr, "Value": [f"{int(v):08X}" for v in values]}
    if vr in ("IS", "DS"):
        return {"vr": vr, "Value": _numbers(vr, [str(v).strip("\0 ") for v in values], path, texts)}
    if vr in ("FL", "FD"):
        return {"vr": vr, "Value": [float(v) if math.isfinite(float(v)) else None for v in values]}
    if vr in ("US", "SS", "UL", "SL", "SV", "UV"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    strings = [str(v).strip("\0 ") if vr in _STRIP_BOTH_VRS else str(v).rstrip("\0 ") for v in values]
    if len(strings) == 1 and not strings[0]:
        return {"vr": vr}
    return {"vr": vr, "Value": [t if t else None for t in strings]}


def _person_name_value(value: Any) -> dict[str, str] | None:
    if isinstance(value, PersonName):
        out = {}
        for label, group in (("Alphabetic", value.alphabetic), ("Ideographic", value.ideographic),
                             ("Phonetic", value.phonetic)):
            if group and group.strip("^ "):
                out[label] = group.rstrip(" ")
        return out or None
    return _person_name_json(str(value)) if value else None


def dictionary_keyword(tag: int) -> str:
    entry = DicomDictionary.get(tag)
    return entry[4] if entry else ""
