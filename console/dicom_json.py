"""DICOM JSON (PS3.18 F.2) as text for the pages: one value of a tag, and an instance's metadata as a tree.

Values come back as plain strings: the templates escape them (Jinja2 autoescape), never this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TAGS = {  # the attributes the lists show, by keyword
    "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
    "PatientName": "00100010", "PatientID": "00100020", "StudyDate": "00080020", "StudyDescription": "00081030",
    "ModalitiesInStudy": "00080061", "Modality": "00080060", "SeriesDescription": "0008103E",
    "SeriesNumber": "00200011", "InstanceNumber": "00200013", "NumberOfFrames": "00280008",
    "NumberOfStudyRelatedInstances": "00201208", "NumberOfSeriesRelatedInstances": "00201209",
    "Rows": "00280010", "Columns": "00280011", "AccessionNumber": "00080050",
}


def value(dataset: dict[str, Any], keyword: str) -> str:
    """The text of one attribute of a QIDO result or metadata, '' when absent."""
    element = dataset.get(TAGS[keyword], {})
    return element_text(element) if isinstance(element, dict) else ""


def element_text(element: dict[str, Any]) -> str:
    if "BulkDataURI" in element:
        return "(bulk data)"
    if "InlineBinary" in element:
        return f"(binary, {len(element['InlineBinary']) * 3 // 4} bytes)"
    values = element.get("Value", [])
    return "\\".join(_one(v) for v in values if not isinstance(v, dict) or "Alphabetic" in v)


def _one(item: Any) -> str:
    if isinstance(item, dict):  # PN: the alphabetic group, '^' between components as written in DICOM
        return str(item.get("Alphabetic", ""))
    return str(item)


def display_name(person_name: str) -> str:
    """Doe^John → Doe, John (how a list shows a PN)."""
    family, _, rest = person_name.partition("^")
    given = rest.replace("^", " ").strip()
    return f"{family}, {given}" if given else family


def display_date(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da


@dataclass
class Node:
    tag: str  # (gggg,eeee)
    keyword: str
    vr: str
    text: str
    items: list[list[Node]] = field(default_factory=list)  # SQ: one list of nodes per item


def tree(dataset: dict[str, Any]) -> list[Node]:
    """An instance's metadata as nodes in tag order; sequences nest their items."""
    nodes = []
    for tag in sorted(dataset):
        element = dataset[tag]
        if not isinstance(element, dict):
            continue
        vr = str(element.get("vr", ""))
        node = Node(f"({tag[:4]},{tag[4:]})", _keyword(tag), vr, "" if vr == "SQ" else element_text(element))
        if vr == "SQ":
            node.items = [tree(item) for item in element.get("Value", []) if isinstance(item, dict)]
        nodes.append(node)
    return nodes


def _keyword(tag: str) -> str:
    try:
        from pydicom.datadict import keyword_for_tag

        return keyword_for_tag(int(tag, 16)) or ("(private)" if int(tag[:4], 16) % 2 else "")
    except (ImportError, ValueError):
        return ""
