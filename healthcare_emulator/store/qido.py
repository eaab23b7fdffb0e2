"""QIDO-RS search over stored instances (PS3.18 10.6, matching per PS3.4 C.2.2.2). Knows no HTTP.

Input is the store's InstanceRecords, whose metadata is DICOM JSON parsed once at store time; nothing here
reads a blob. Study and series results are built from their instances: an entity matches when at least one
of its instances matches every filter, and its non-computed attributes come from its first instance in UID
order. Counts and ModalitiesInStudy are computed over the whole study or series, whatever the filters.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from ..errors import InvalidArgument
from .dicom_store import InstanceRecord

STUDY, SERIES, INSTANCE = "study", "series", "instance"

MAX_OFFSET = 1_000_000
MAX_LIMIT = {STUDY: 5_000, SERIES: 5_000, INSTANCE: 50_000}

# Query parameters that are not matching keys: the QIDO ones, plus Google's standard system parameters,
# which every Google API ignores (the python client appends alt=json).
_CONTROL_PARAMS = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
_SYSTEM_PARAMS = frozenset({"alt", "prettyprint", "fields", "$.xgafv", "key", "quotauser", "access_token",
                            "callback", "uploadtype", "upload_protocol", "oauth_token"})

TAG_SPECIFIC_CHARSET = "00080005"
TAG_SOP_CLASS_UID = "00080016"
TAG_SOP_UID = "00080018"
TAG_MODALITY = "00080060"
TAG_MODALITIES_IN_STUDY = "00080061"
TAG_SOP_CLASSES_IN_STUDY = "00080062"
TAG_RETRIEVE_URL = "00081190"
TAG_STUDY_UID = "0020000D"
TAG_SERIES_UID = "0020000E"
TAG_STUDY_SERIES_COUNT = "00201206"
TAG_STUDY_INSTANCE_COUNT = "00201208"
TAG_SERIES_INSTANCE_COUNT = "00201209"

# Attributes the emulator computes rather than reads from an instance, with their VRs.
COMPUTED_VRS = {
    TAG_MODALITIES_IN_STUDY: "CS",
    TAG_SOP_CLASSES_IN_STUDY: "UI",
    TAG_RETRIEVE_URL: "UR",
    TAG_STUDY_SERIES_COUNT: "IS",
    TAG_STUDY_INSTANCE_COUNT: "IS",
    TAG_SERIES_INSTANCE_COUNT: "IS",
}

# Default result attributes, PS3.18 Table 6.7.1-2 (study), 6.7.1-2a (series), 6.7.1-2b (instance).
# Instance Availability (0008,0056) is omitted: the emulator stores no value for it.
DEFAULT_ATTRIBUTES = {
    STUDY: ("00080005", "00080020", "00080030", "00080050", "00080061", "00080090", "00080201", "00081190",
            "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208"),
    SERIES: ("00080005", "00080060", "00080201", "0008103E", "00081190", "0020000E", "00200011", "00201209",
             "00400244", "00400245", "00400275"),
    INSTANCE: ("00080005", "00080016", "00080018", "00080201", "00081190", "00200013", "00280008", "00280010",
               "00280011", "00280100"),
}

# Attributes of the Patient, General Study and Patient Study modules (all of group 0010 plus these), used
# for includefield=all at the study level; an approximation of the IE classification, not the full table.
_STUDY_LEVEL_EXTRA = frozenset({
    "00080005", "00080020", "00080030", "00080050", "00080051", "00080056", "00080061", "00080062", "00080090",
    "00080096", "00080201", "00081030", "00081032", "00081048", "00081049", "00081060", "00081062", "00081080",
    "00081084", "00081110", "00081190", "0020000D", "00200010", "00201206", "00201208", "00321032", "00321033",
    "00321060", "00321064", "00380010", "00380014", "00380060", "00400031", "00400032", "00400033",
})
# General Series, General Equipment and Frame of Reference module attributes, for includefield=all.
_SERIES_LEVEL = frozenset({
    "00080005", "00080021", "00080031", "00080060", "00080064", "00080068", "00080070", "00080080", "00080081",
    "00081010", "00081040", "00081050", "00081052", "00081070", "00081072", "00081090", "0008103E", "0008103F",
    "00081111", "00081190", "00080201", "00180015", "00181000", "00181020", "00181030", "00185100",
    "0020000E", "00200011", "00200052", "00200060", "00201040", "00201209", "00400244", "00400245", "00400253",
    "00400254", "00400260", "00400275",
})

_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"})
_WILDCARD_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_DATE_VRS = frozenset({"DA", "TM", "DT"})
# PS3.4 C.2.2.2.2: UID list matching; ModalitiesInStudy also takes several values (PS3.4 C.6.2.1.2).
_LIST_MATCH_TAGS = frozenset({TAG_MODALITIES_IN_STUDY, TAG_SOP_CLASSES_IN_STUDY})
_RANGE_TEMPLATES = {  # begin / end padding for partial date, time and datetime values
    "DA": ("00000101", "99991231"),
    "TM": ("000000.000000", "235959.999999"),
    "DT": ("00000101000000.000000", "99991231235959.999999"),
}


@dataclass(frozen=True)
class Attribute:
    """An attribute named in a query: its tag path (nested attributes are dotted) and dictionary VR."""

    name: str  # as the client wrote it, for error messages
    path: tuple[str, ...]
    vr: str | None  # None for private or unknown-VR tags: the stored element's VR is used

    @property
    def top(self) -> str:
        return self.path[0]


@dataclass(frozen=True)
class Filter:
    attribute: Attribute
    value: str

    def matches(self, view: dict[str, Any]) -> bool:
        if self.value == "":  # universal matching: every entity matches, and the attribute is returned
            return True
        return _match_path(view, self.attribute.path, self, 0)


@dataclass
class Query:
    filters: list[Filter] = field(default_factory=list)
    include: list[str] = field(default_factory=list)  # extra top-level tags to return
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False

    def uid_values(self, tag: str) -> list[str] | None:
        """The UIDs a filter on `tag` lists (no wildcards), so a caller can narrow its storage lookup."""
        for item in self.filters:
            if item.attribute.path == (tag,) and item.value:
                return _split_list(item.value)
        return None


@dataclass
class SearchResult:
    results: list[dict[str, Any]]
    warnings: list[str]


UrlFor = Callable[[str, str | None, str | None], str]


def resolve_attribute(name: str) -> Attribute:
    """Map a keyword, a tag (8 hex digits) or a dotted path of them to tags; unknown names are a 400."""
    tags: list[str] = []
    vr: str | None = None
    for piece in name.split("."):
        piece = piece.strip()
        if re.fullmatch(r"[0-9A-Fa-f]{8}", piece):
            tag = piece.upper()
        else:
            number = tag_for_keyword(piece) if piece else None
            if number is None:
                raise InvalidArgument(
                    f"unknown DICOM attribute {piece!r} in {name!r}: use a DICOM keyword (e.g. PatientID) or"
                    " a tag of 8 hexadecimal digits (e.g. 00100020)"
                )
            tag = f"{number:08X}"
        tags.append(tag)
        vr = _dictionary_vr(tag)
    return Attribute(name, tuple(tags), vr)


def _dictionary_vr(tag: str) -> str | None:
    if tag in COMPUTED_VRS:
        return COMPUTED_VRS[tag]
    try:
        vr = dictionary_VR(int(tag, 16))
    except KeyError:
        return None
    return vr if vr in _BINARY_VRS | _NUMERIC_VRS | _WILDCARD_VRS | _DATE_VRS | {"UI", "SQ", "AT"} else None


def parse_query(params: Iterable[tuple[str, str]]) -> Query:
    """Build a Query from query-string pairs; every problem is a 400 naming the parameter."""
    query = Query()
    limit_text = None
    for key, value in params:
        lowered = key.lower()
        if lowered == "includefield":
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item.lower() == "all":
                    query.include_all = True
                else:
                    query.include.append(resolve_attribute(item).top)
        elif lowered == "limit":
            limit_text = value
        elif lowered == "offset":
            query.offset = _non_negative(key, value)
        elif lowered == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise InvalidArgument(f"invalid fuzzymatching {value!r}: use true or false")
            query.fuzzy = value.lower() == "true"
        elif lowered in _SYSTEM_PARAMS:
            continue
        else:
            attribute = resolve_attribute(key)
            _check_filter(attribute, value)
            query.filters.append(Filter(attribute, value))
    if query.offset > MAX_OFFSET:
        raise InvalidArgument(f"invalid offset {query.offset}: the maximum offset is {MAX_OFFSET}")
    if limit_text is not None:
        limit = _non_negative("limit", limit_text)
        query.limit = limit or None  # limit=0 means "no client limit", like an absent limit
    return query


def _non_negative(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"invalid {name} {value!r}: it must be a non-negative integer") from None
    if number < 0:
        raise InvalidArgument(f"invalid {name} {number}: it must not be negative")
    return number


def _check_filter(attribute: Attribute, value: str) -> None:
    """Reject filters that can never be evaluated, so the client learns it now rather than getting no match."""
    vr = attribute.vr
    if vr == "SQ":
        raise InvalidArgument(
            f"cannot match on sequence attribute {attribute.name!r}: name a nested attribute, e.g."
            f" {attribute.name}.<keyword>"
        )
    if vr in _BINARY_VRS:
        raise InvalidArgument(f"cannot match on attribute {attribute.name!r}: its VR {vr} holds binary data")
    if not value:
        return
    if vr in _NUMERIC_VRS and _number(value) is None:
        raise InvalidArgument(f"invalid value {value!r} for {attribute.name!r}: VR {vr} needs a number")
    if vr in _DATE_VRS and ("*" in value or "?" in value):
        raise InvalidArgument(f"invalid value {value!r} for {attribute.name!r}: wildcards do not apply to VR {vr}")
    if vr == "UI":
        for uid in _split_list(value):
            if not re.fullmatch(r"[0-9.]{1,64}", uid):
                raise InvalidArgument(f"invalid UID {uid!r} in {attribute.name!r}")


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- matching ----------------------------------------------------------------------------------------


def _match_path(dataset: dict[str, Any], path: tuple[str, ...], item: Filter, depth: int) -> bool:
    element = dataset.get(path[depth])
    if not element:
        return False
    values = element.get("Value") or []
    if depth + 1 < len(path):  # a sequence: match when any item matches the rest of the path
        return any(isinstance(v, dict) and _match_path(v, path, item, depth + 1) for v in values)
    vr = item.attribute.vr or element.get("vr")
    return bool(values) and _match_values(values, vr, path[depth], item.value)


def _match_values(values: list[Any], vr: str | None, tag: str, query: str) -> bool:
    if vr == "UI" or tag in _LIST_MATCH_TAGS:
        wanted = set(_split_list(query))
        return any(isinstance(v, str) and v in wanted for v in values)
    if vr in _DATE_VRS:
        return any(isinstance(v, str) and _match_date(v, vr, query) for v in values)
    if vr in _NUMERIC_VRS:
        target = _number(query)
        return target is not None and any(_same_number(v, target) for v in values)
    if vr == "PN":
        return any(_match_text(candidate, query, ignore_case=True) for v in values for candidate in _pn_texts(v))
    if vr == "AT":
        return any(isinstance(v, str) and v.upper() == query.strip().upper() for v in values)
    return any(isinstance(v, str) and _match_text(v, query, ignore_case=False) for v in values)


def _same_number(value: Any, target: float) -> bool:
    if isinstance(value, str):
        value = _number(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return math.isclose(float(value), target, rel_tol=1e-9, abs_tol=1e-12)


def _pn_texts(value: Any) -> list[str]:
    """The strings a PN query is compared with: each component group, and the whole A=I=P form."""
    if not isinstance(value, dict):
        return []
    groups = [value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")]
    whole = "=".join(groups).rstrip("=")
    return [g for g in groups if g] + ([whole] if whole else [])


def _match_text(value: str, query: str, ignore_case: bool) -> bool:
    if "*" in query or "?" in query:
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in query)
        return re.fullmatch(pattern, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None
    if ignore_case:
        return value.casefold() == query.casefold()
    return value == query


def _match_date(value: str, vr: str, query: str) -> bool:
    stored = _normalise_date(value, vr, 0)
    if stored is None:
        return False
    if "-" not in query or (vr == "DT" and query.count("-") > 1):
        # Single value matching; a DT with a negative UTC offset and no range also lands here.
        return stored == _normalise_date(query.strip(), vr, 0)
    begin, _, end = query.partition("-")
    low = _normalise_date(begin.strip(), vr, 0) if begin.strip() else None
    high = _normalise_date(end.strip(), vr, 1) if end.strip() else None
    if (begin.strip() and low is None) or (end.strip() and high is None):
        return False
    return (low is None or stored >= low) and (high is None or stored <= high)


def _normalise_date(value: str, vr: str, side: int) -> str | None:
    """Pad a (partial) DA/TM/DT value to full precision so plain string comparison orders it correctly.

    side 0 pads with the earliest instant (range start, stored values), side 1 with the latest (range end).
    """
    value = value.replace(":", "") if vr == "TM" else value  # ACR-NEMA style 10:15:00
    if vr == "DT":
        value = re.split(r"[+-]", value, maxsplit=1)[0] if len(value) > 4 else value  # drop a UTC offset
    if vr == "DA":
        value = value.replace(".", "")  # ACR-NEMA style 2024.01.02
    if not value or not re.fullmatch(r"[0-9]+(\.[0-9]*)?", value):
        return None
    template = _RANGE_TEMPLATES[vr][side]
    if "." in value and "." in template:
        whole, _, fraction = value.partition(".")
        t_whole, _, t_fraction = template.partition(".")
        if len(whole) > len(t_whole):
            return None
        if len(whole) < len(t_whole):  # fraction after a partial value is malformed
            return None
        return whole + "." + (fraction + t_fraction[len(fraction):])[: len(t_fraction)]
    if len(value) > len(template.partition(".")[0]):
        return None
    return value + template[len(value):]


# --- search ------------------------------------------------------------------------------------------


class _Instance:
    """One instance of a search: its metadata JSON is parsed only when a filter or a result needs it (parsing
    is nearly all of a search's cost, and a page of studies needs few instances)."""

    def __init__(self, record: InstanceRecord):
        self.record = record

    @cached_property
    def metadata(self) -> dict[str, Any]:
        return json.loads(self.record.metadata)


class _Scope:
    """The study, series or instance a match stands for, with its computed attributes built on first use."""

    def __init__(self, url_for: UrlFor, study_uid: str, series_map: dict[str, list[_Instance]],
                 parent: _Scope | None = None, series_uid: str | None = None, sop_uid: str | None = None):
        self.url_for, self.study_uid, self.series_map = url_for, study_uid, series_map
        self.parent, self.series_uid, self.sop_uid = parent, series_uid, sop_uid

    @cached_property
    def computed(self) -> dict[str, Any]:
        if self.parent is None:
            return _study_computed(self.study_uid, self.series_map, self.url_for)
        computed = {**self.parent.computed,
                    TAG_RETRIEVE_URL: {"vr": "UR", "Value": [self.url_for(self.study_uid, self.series_uid,
                                                                          self.sop_uid)]}}
        if self.sop_uid is None and self.series_uid is not None:
            computed[TAG_SERIES_INSTANCE_COUNT] = {"vr": "IS", "Value": [len(self.series_map[self.series_uid])]}
        return computed


def search(
    records: list[InstanceRecord],
    query: Query,
    level: str,
    url_for: UrlFor,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    upper_levels: tuple[str, ...] = (),
) -> SearchResult:
    """Run a QIDO query at `level` over `records` (in UID order).

    `records` must hold whole studies, so counts are right; study_uid/series_uid restrict the results
    to the path's scope. `upper_levels` are the higher levels whose default attributes results carry too
    (PS3.18 10.6.3.3): study for /series, study and series for /instances, series for /studies/{s}/instances.
    """
    studies: dict[str, dict[str, list[_Instance]]] = {}
    for record in records:
        studies.setdefault(record.study_uid, {}).setdefault(record.series_uid, []).append(_Instance(record))

    maximum = MAX_LIMIT[level]
    limit = min(query.limit or maximum, maximum)
    # Only the "additional results" warning needs every match counted; otherwise the search ends with the page.
    count_all = query.limit is None or query.limit > maximum
    matches = _matches(studies, query.filters, level, url_for, study_uid, series_uid)
    matched = list(matches if count_all else itertools.islice(matches, query.offset + limit))

    warnings = []
    if query.fuzzy:
        warnings.append("The fuzzymatching parameter is not supported. Only literal matching has been performed.")
    selected = matched[query.offset:query.offset + limit]
    remaining = len(matched) - query.offset - len(selected)
    if remaining > 0 and count_all:
        warnings.append(f"There are {remaining} additional results that can be requested")
    levels = {level, *upper_levels}
    tags = _result_tags(query, levels)
    return SearchResult([_project(_view(instance, scope.computed), tags, query.include_all, level, levels)
                         for instance, scope in selected], warnings)


def _matches(studies: dict[str, dict[str, list[_Instance]]], filters: list[Filter], level: str, url_for: UrlFor,
             study_uid: str | None, series_uid: str | None) -> Iterator[tuple[_Instance, _Scope]]:
    """Each matching entity in UID order, as its first instance (whose attributes it shows, whichever instance
    matched) and its scope."""
    # A filter on a computed attribute (counts, ModalitiesInStudy, …) sees it merged into each instance's view;
    # other filters read the instance's own metadata, which is the same there.
    on_computed = any(f.attribute.top in COMPUTED_VRS for f in filters)

    def match(instance: _Instance, scope: _Scope) -> bool:
        view = _view(instance, scope.computed) if on_computed else instance.metadata
        return all(f.matches(view) for f in filters)

    for s_uid, series_map in studies.items():
        if study_uid is not None and s_uid != study_uid:
            continue
        study = _Scope(url_for, s_uid, series_map)
        if level == STUDY:
            instances = [i for series in series_map.values() for i in series]
            if any(match(i, study) for i in instances):
                yield instances[0], study
            continue
        for se_uid, instances in series_map.items():
            if series_uid is not None and se_uid != series_uid:
                continue
            series = _Scope(url_for, s_uid, series_map, study, se_uid)
            if level == SERIES:
                if any(match(i, series) for i in instances):
                    yield instances[0], series
                continue
            for instance in instances:
                scope = _Scope(url_for, s_uid, series_map, series, se_uid, instance.record.sop_uid)
                if match(instance, scope):
                    yield instance, scope


def _study_computed(study_uid: str, series_map: dict[str, list[_Instance]], url_for: UrlFor) -> dict[str, Any]:
    modalities = sorted({m for series in series_map.values() for i in series
                         if isinstance(m := _first(i.metadata, TAG_MODALITY), str) and m})
    sop_classes = sorted({i.record.sop_class_uid for series in series_map.values() for i in series
                          if i.record.sop_class_uid})
    computed: dict[str, Any] = {
        TAG_STUDY_SERIES_COUNT: {"vr": "IS", "Value": [len(series_map)]},
        TAG_STUDY_INSTANCE_COUNT: {"vr": "IS", "Value": [sum(len(s) for s in series_map.values())]},
        TAG_RETRIEVE_URL: {"vr": "UR", "Value": [url_for(study_uid, None, None)]},
        TAG_MODALITIES_IN_STUDY: {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"},
        TAG_SOP_CLASSES_IN_STUDY: {"vr": "UI", "Value": sop_classes} if sop_classes else {"vr": "UI"},
    }
    return computed


def _first(metadata: dict[str, Any], tag: str) -> Any:
    values = metadata.get(tag, {}).get("Value")
    return values[0] if values else None


def _view(instance: _Instance, computed: dict[str, Any]) -> dict[str, Any]:
    return {**instance.metadata, **computed}


def _result_tags(query: Query, levels: set[str]) -> set[str]:
    tags: set[str] = set()
    for each in levels:
        tags |= set(DEFAULT_ATTRIBUTES[each])
    tags |= {f.attribute.top for f in query.filters}  # matching keys are always returned (PS3.18 10.6.3.3)
    tags |= set(query.include)
    return tags


def _level_of(tag: str) -> str:
    if tag.startswith("0010") or tag in _STUDY_LEVEL_EXTRA:
        return STUDY
    if tag in _SERIES_LEVEL:
        return SERIES
    return INSTANCE


def _project(view: dict[str, Any], tags: set[str], include_all: bool, level: str,
             levels: set[str]) -> dict[str, Any]:
    """The result object: requested tags in ascending order, without file meta and bulk data."""
    wanted = set(tags)
    if include_all:
        for tag in view:
            if tag == TAG_RETRIEVE_URL:
                continue  # already in the defaults, and only the entity's own URL is in the view
            if tag in COMPUTED_VRS:
                if _level_of(tag) in levels:
                    wanted.add(tag)
            elif level == INSTANCE or _level_of(tag) in levels:
                wanted.add(tag)  # an instance's own attributes are all instance attributes
    instance_url = view.get(TAG_RETRIEVE_URL, {}).get("Value", [""])[0]
    out: dict[str, Any] = {}
    for tag in sorted(wanted):
        element = view.get(tag)
        if element is None or tag.startswith("0002") or "BulkDataURI" in element:
            continue  # no file meta (not part of the data set) and no bulk data in search results
        out[tag] = absolute_bulkdata(element, instance_url) if element.get("vr") == "SQ" else element
    return out


def absolute_bulkdata(element: dict[str, Any], instance_url: str) -> dict[str, Any]:
    """A copy of an element whose relative BulkDataURIs ("bulkdata/...") point below `instance_url`."""
    if "BulkDataURI" in element and element["BulkDataURI"].startswith("bulkdata/"):
        return {**element, "BulkDataURI": f"{instance_url}/{element['BulkDataURI']}"}
    if element.get("vr") == "SQ" and element.get("Value"):
        items = [{tag: absolute_bulkdata(child, instance_url) for tag, child in item.items()}
                 if isinstance(item, dict) else item for item in element["Value"]]
        return {**element, "Value": items}
    return element
