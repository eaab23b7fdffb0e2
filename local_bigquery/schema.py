"""Stored DICOM JSON metadata → BigQuery rows and schema (reference §5). Pure: no DuckDB, no HTTP.

Input is the metadata the store computed once at store time (PS3.18 F.2 DICOM JSON keyed by 8-hex-digit
tags, file meta group 0002 included, binary values as ``InlineBinary`` / ``BulkDataURI``). Output per
instance is one JSON-serialisable row; converting a batch also grows one ``Schema`` (the union of what
the rows need), so an export creates or extends its table once.

Mapping (every choice is listed in FIDELITY-bigquery.md):
- column = dictionary keyword; type from the dictionary VR (the instance's own VR only where the
  dictionary allows several, e.g. "US or OW"); REPEATED unless the dictionary VM is exactly "1";
- PN → RECORD {Alphabetic, Ideographic, Phonetic} × {FamilyName, GivenName, MiddleName, NamePrefix,
  NameSuffix}; SQ → REPEATED RECORD of its items' elements, recursively;
- elements without a keyword (private, unknown public, non-base repeating groups) → ``OtherElements``
  (REPEATED RECORD {Tag 'Tag_GGGGEEEE', Data STRING REPEATED}); such sequences → column ``Tag_GGGGEEEE``;
- binary values and values that do not fit their column (malformed DA/TM/DT, …) are not exported and
  their names go to ``DroppedTags`` (REPEATED RECORD {TagName}); nested ones as a dotted path;
- group length elements (gggg,0000) are left out.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from pydicom.datadict import DicomDictionary, RepeatersDictionary

STRING, INTEGER, FLOAT, DATE, TIME, TIMESTAMP, RECORD, JSON = (
    "STRING", "INTEGER", "FLOAT", "DATE", "TIME", "TIMESTAMP", "RECORD", "JSON")

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Where columns that are not DICOM elements sort: after every tag (tags are < 2**32).
_AFTER_TAGS = 2**32


class SchemaConflict(ValueError):
    """A column exists with a type the rows cannot be written to; the message names the column."""


class Field:
    """One BigQuery column or nested field. RECORD fields keep their children by name, in insertion order."""

    __slots__ = ("fields", "name", "order", "repeated", "type")

    def __init__(self, name: str, type_: str, repeated: bool = False, fields: dict[str, Field] | None = None,
                 order: int = _AFTER_TAGS):
        self.name = name
        self.type = type_
        self.repeated = repeated
        self.fields: dict[str, Field] | None = fields if type_ == RECORD else None
        if type_ == RECORD and self.fields is None:
            self.fields = {}
        self.order = order  # the tag for DICOM columns, so a new table lists them in tag order

    @property
    def mode(self) -> str:
        return "REPEATED" if self.repeated else "NULLABLE"

    def describe(self) -> str:
        """BigQuery-style type, e.g. `RECORD<Tag STRING, Data STRING REPEATED> REPEATED`."""
        inner = ""
        if self.fields is not None:
            inner = "<" + ", ".join(f"{f.name} {f.describe()}" for f in self.fields.values()) + ">"
        return f"{self.type}{inner}{' REPEATED' if self.repeated else ''}"

    def copy(self) -> Field:
        children = {k: f.copy() for k, f in self.fields.items()} if self.fields is not None else None
        return Field(self.name, self.type, self.repeated, children, self.order)

    def same_shape(self, other: Field) -> bool:
        if (self.type, self.repeated) != (other.type, other.repeated):
            return False
        if self.fields is None or other.fields is None:
            return self.fields is other.fields
        return self.fields.keys() == other.fields.keys() and all(
            f.same_shape(other.fields[k]) for k, f in self.fields.items())

    def merged_with(self, needed: Field, path: str = "") -> Field:
        """This (existing) field grown by whatever nested fields `needed` adds; SchemaConflict if incompatible."""
        where = f"{path}{self.name}"
        if (self.type, self.repeated) != (needed.type, needed.repeated):
            raise SchemaConflict(f"column {where} is {self.describe()} in the table but the export writes"
                                 f" {needed.describe()}")
        if self.fields is None or needed.fields is None:
            return self
        children = dict(self.fields)
        lower = {k.lower(): k for k in children}
        for name, child in needed.fields.items():
            existing = lower.get(name.lower())
            children[existing or name] = (children[existing].merged_with(child, f"{where}.") if existing
                                          else child.copy())
        return Field(self.name, self.type, self.repeated, children, self.order)

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.describe()!r})"


def ordered(fields: Iterable[Field]) -> list[Field]:
    """Fields in table order (tag order, then the non-DICOM columns), RECORDs that have no fields left out.

    BigQuery has no RECORD without fields: a sequence whose items never carry an exportable element gets
    no column (its rows' values are ignored when written).
    """
    out = []
    for f in sorted(fields, key=lambda f: f.order):
        if f.fields is not None:
            children = ordered(f.fields.values())
            if not children:
                continue
            f = Field(f.name, f.type, f.repeated, {c.name: c for c in children}, f.order)
        out.append(f)
    return out


# --- fixed fields --------------------------------------------------------------------------------------

_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _pn_field(name: str, repeated: bool, order: int) -> Field:
    groups = {g: Field(g, RECORD, False, {c: Field(c, STRING, order=i) for i, c in enumerate(_PN_COMPONENTS)},
                       order=j) for j, g in enumerate(_PN_GROUPS)}
    return Field(name, RECORD, repeated, groups, order)


OTHER_ELEMENTS = "OtherElements"
DROPPED_TAGS = "DroppedTags"


def _other_elements_field() -> Field:
    return Field(OTHER_ELEMENTS, RECORD, True,
                 {"Tag": Field("Tag", STRING, order=0), "Data": Field("Data", STRING, True, order=1)},
                 order=_AFTER_TAGS)


def extra_fields(include_source_store: bool, json_schema: bool = False, with_type: bool = True) -> list[Field]:
    """The non-DICOM columns every exported row carries (SchemaJSON's list; reference §5.5)."""
    names: list[tuple[str, str, bool]] = []
    if include_source_store:
        names.append(("SourceDicomStore", STRING, False))
    if json_schema:
        names.append(("Metadata", JSON, False))
    names += [("StructuredStorageSize", INTEGER, False)]
    if json_schema:
        names.append((DROPPED_TAGS, STRING, True))
    names += [("StorageClass", STRING, False), ("LastUpdated", TIMESTAMP, False), ("BlobStorageSize", INTEGER, False)]
    if with_type:
        names.append(("Type", STRING, False))
    fields = [Field(n, t, r, order=_AFTER_TAGS + 2 + i) for i, (n, t, r) in enumerate(names)]
    if not json_schema:
        fields.append(Field(DROPPED_TAGS, RECORD, True, {"TagName": Field("TagName", STRING, order=0)},
                            order=_AFTER_TAGS + 1))
    return fields


def json_schema_fields(include_source_store: bool, with_type: bool = True) -> list[Field]:
    uids = [Field(n, STRING, order=i) for i, n in enumerate(("StudyInstanceUID", "SeriesInstanceUID",
                                                             "SOPInstanceUID"))]
    return uids + extra_fields(include_source_store, json_schema=True, with_type=with_type)


def extra_values(storage_class: str, blob_size: int, structured_size: int, last_updated: str,
                 source_store: str | None, change_type: str | None = "INSERT") -> dict[str, Any]:
    row: dict[str, Any] = {}
    if source_store is not None:
        row["SourceDicomStore"] = source_store
    row.update(StructuredStorageSize=structured_size, StorageClass=storage_class,
               LastUpdated=_rfc3339_to_timestamp(last_updated), BlobStorageSize=blob_size)
    if change_type is not None:
        row["Type"] = change_type
    return row


def _rfc3339_to_timestamp(value: str) -> str:
    # The store's times are RFC 3339 UTC ("…T…Z"); the warehouse column is a UTC TIMESTAMP.
    return value.replace("T", " ").rstrip("Z")


# --- tags ----------------------------------------------------------------------------------------------

_KIND_BY_VR = {
    **dict.fromkeys(("AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UI", "UR", "UT", "DS", "IS"), STRING),
    "DA": DATE, "TM": TIME, "DT": TIMESTAMP,
    "FL": FLOAT, "FD": FLOAT,
    **dict.fromkeys(("SL", "SS", "UL", "US", "SV", "UV", "US or SS"), INTEGER), "AT": "AT",
    "PN": "PN", "SQ": "SQ",
}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW"})
BINARY = "BINARY"


class _Tag:
    """What the dictionary says about one tag, computed once per tag."""

    __slots__ = ("_kinds", "dict_vr", "keyword", "name", "number", "repeated", "skip")

    def __init__(self, key: str):
        number = int(key, 16)
        self.number = number
        self.skip = number & 0xFFFF == 0  # group length: not exported
        self.name = f"Tag_{key.upper()}"
        self.keyword = False
        self.dict_vr: str | None = None
        self.repeated = False
        self._kinds: dict[str, str] = {}
        entry = None if number >> 16 & 1 else _dictionary_entry(number)
        if entry is not None and entry[4]:
            self.keyword = True
            self.name = entry[4]
            self.dict_vr = entry[0]
            self.repeated = entry[1] != "1"

    def kind(self, vr: str) -> str:
        """Column kind for this element as stored with `vr`: a type above, "PN", "SQ", "AT", BINARY or OTHER."""
        kind = self._kinds.get(vr)
        if kind is None:
            kind = self._kinds[vr] = self._kind(vr)
        return kind

    def _kind(self, vr: str) -> str:
        if not self.keyword:
            if vr == "SQ":
                return "SQ"
            return BINARY if vr in _BINARY_VRS else "OTHER"
        dict_vr = self.dict_vr or ""
        if dict_vr in ("US or OW", "US or SS or OW", "NONE"):
            # The dictionary allows a binary form: the instance's VR decides.
            return BINARY if vr in _BINARY_VRS else _KIND_BY_VR.get(vr, BINARY)
        if dict_vr in _BINARY_VRS:
            return BINARY
        return _KIND_BY_VR.get(dict_vr, BINARY)


def _dictionary_entry(number: int) -> tuple[str, str, str, str, str] | None:
    entry = DicomDictionary.get(number)
    if entry is not None:
        return entry
    # Repeating groups (50xx, 60xx, …): only the base group gets the keyword, or two overlays would
    # share one column; the others are exported like elements without a keyword.
    for mask, repeater in RepeatersDictionary.items():
        if re.fullmatch(mask.replace("x", "[0-9A-F]"), f"{number:08X}"):
            return repeater if int(mask.replace("x", "0"), 16) == number else None
    return None


@functools.cache
def tag_info(key: str) -> _Tag:
    return _Tag(key)


# --- values ----------------------------------------------------------------------------------------------

def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, (int, float)):
        return repr(value)  # DS/IS are JSON numbers in the store; repr round-trips them exactly
    if isinstance(value, dict):  # a PN value where a string is expected
        return "=".join(value.get(g, "") for g in _PN_GROUPS).rstrip("=")
    raise ValueError(f"unexpected {type(value).__name__}")


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        number = int(value.strip())  # IS text in an integer column
    else:
        raise ValueError(f"not an integer: {type(value).__name__}")
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError("outside INT64")
    return number


def _to_at(value: Any) -> int:
    # DICOM JSON writes an AT value as 8 hex digits, "GGGGEEEE"; the column holds the tag as a number.
    if isinstance(value, str) and re.fullmatch(r"[0-9A-Fa-f]{8}", value):
        return int(value, 16)
    return _to_integer(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("not finite")
        return number
    raise ValueError(f"not a number: {type(value).__name__}")


_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")  # YYYYMMDD, or ACR-NEMA's YYYY.MM.DD
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")  # HH[MM[SS[.F]]], colons tolerated
_DT = re.compile(r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?)?)?)?"
                 r"([+-]\d{4})?")


def _to_date(value: Any) -> str:
    match = _DA.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("not a DA value")
    return date(int(match[1]), int(match[2]), int(match[3])).isoformat()


def _to_time(value: Any) -> str:
    match = _TM.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("not a TM value")
    micro = int((match[4] or "0").ljust(6, "0"))
    return time(int(match[1]), int(match[2] or 0), int(match[3] or 0), micro).isoformat()


def _to_timestamp(value: Any) -> str:
    match = _DT.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("not a DT value")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0").ljust(6, "0"))
    # Missing components take their lowest value; a value without an offset is read as UTC.
    zone = UTC
    if offset:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise ValueError("bad offset")
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    moment = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                      int(second or 0), micro, tzinfo=zone).astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(sep=" ")


def _pn_group(text: str | None) -> dict[str, str | None] | None:
    if not text or not text.strip("^ "):
        return None  # "^^^^" is a name with no components: no name
    parts = text.split("^")
    if len(parts) > 5:  # more than five components: keep the rest in NameSuffix rather than lose it
        parts = [*parts[:4], "^".join(parts[4:])]
    parts += [""] * (5 - len(parts))
    return {c: (p or None) for c, p in zip(_PN_COMPONENTS, parts, strict=True)}


def _to_pn(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):  # tolerate a plain string: it is the alphabetic group
        value = {"Alphabetic": value}
    if not isinstance(value, dict):
        raise ValueError("not a PN value")
    groups = {g: _pn_group(value.get(g)) for g in _PN_GROUPS}
    return groups if any(groups.values()) else None


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    STRING: _to_string, INTEGER: _to_integer, FLOAT: _to_float, DATE: _to_date, TIME: _to_time,
    TIMESTAMP: _to_timestamp, "PN": _to_pn, "AT": _to_at,
}


@functools.cache
def _scalar_field(name: str, kind: str, repeated: bool, order: int) -> Field:
    # Shared between rows and schemas: scalar fields are never mutated.
    if kind == "PN":
        return _pn_field(name, repeated, order)
    return Field(name, INTEGER if kind == "AT" else kind, repeated, order=order)


class Converter:
    """Turns stored metadata into rows, growing `columns` (the union schema of every row converted)."""

    def __init__(self) -> None:
        self.columns: dict[str, Field] = {}

    def schema(self, extras: list[Field]) -> list[Field]:
        return ordered([*self.columns.values(), *extras])

    def flattened_row(self, metadata: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
        dropped: dict[str, None] = {}
        row = self._dataset(metadata, self.columns, dropped, "")
        row[DROPPED_TAGS] = [{"TagName": name} for name in dropped]
        row.update(extras)
        return row

    def json_row(self, metadata: dict[str, Any], uids: tuple[str, str, str],
                 extras: dict[str, Any]) -> dict[str, Any]:
        dropped: dict[str, None] = {}
        content = self._dataset(metadata, {}, dropped, "")
        row: dict[str, Any] = dict(zip(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"), uids,
                                       strict=True))
        row["Metadata"] = content
        row[DROPPED_TAGS] = list(dropped)
        row.update(extras)
        return row

    def _dataset(self, elements: dict[str, Any], columns: dict[str, Field], dropped: dict[str, None],
                 prefix: str) -> dict[str, Any]:
        row: dict[str, Any] = {}
        others: list[dict[str, Any]] = []
        for key, element in elements.items():
            tag = tag_info(key)
            if tag.skip:
                continue
            vr = element.get("vr", "UN")
            kind = tag.kind(vr)
            name = tag.name
            if kind == BINARY or "InlineBinary" in element or "BulkDataURI" in element or (
                    (kind == "SQ") != (vr == "SQ")) or (kind == "PN" and vr != "PN"):
                dropped[prefix + name] = None
                continue
            values = element.get("Value")
            if kind == "SQ":
                field = columns.get(name)
                if field is None:
                    field = columns[name] = Field(name, RECORD, True, order=tag.number)
                assert field.fields is not None
                row[name] = [self._dataset(item or {}, field.fields, dropped, f"{prefix}{name}.")
                             for item in values or ()]
                continue
            if kind == "OTHER":
                try:
                    data = [("" if v is None else _to_string(v)) for v in values or ()]
                except ValueError:
                    dropped[prefix + name] = None
                    continue
                others.append({"Tag": name, "Data": data})
                continue
            try:
                value = self._value(kind, tag.repeated, values)
            except (ValueError, TypeError, OverflowError):
                # Doesn't fit its column (malformed DA/TM/DT, …): the column exists, the value is NULL, and
                # DroppedTags says so.
                dropped[prefix + name] = None
                value = None
            if name not in columns:
                columns[name] = _scalar_field(name, kind, tag.repeated, tag.number)
            row[name] = value
        if others:
            if OTHER_ELEMENTS not in columns:
                columns[OTHER_ELEMENTS] = _other_elements_field()
            row[OTHER_ELEMENTS] = others
        return row

    @staticmethod
    def _value(kind: str, repeated: bool, values: list[Any] | None) -> Any:
        if not values:
            return [] if repeated else None
        convert = _CONVERTERS[kind]
        if repeated:
            if kind == STRING:
                # BigQuery arrays hold no NULLs: an empty value in a multi-valued string stays "".
                return [("" if v is None else convert(v)) for v in values]
            return [(None if v is None else convert(v)) for v in values]
        if len(values) == 1:
            value = values[0]
            if value is None or (kind == STRING and type(value) is str):
                return value  # the common case, without a call
            return convert(value)
        if kind == STRING:  # more values than the dictionary's VM 1: keep them, joined the DICOM way
            return "\\".join("" if v is None else convert(v) for v in values)
        raise ValueError("several values for a single-valued column")


def encode_row(row: dict[str, Any]) -> str:
    """One row as a JSON line (what the warehouse loads). UnicodeEncodeError for unencodable text."""
    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    text.encode("utf-8")  # lone surrogates would fail later, inside the load: fail here, for this row only
    return text
