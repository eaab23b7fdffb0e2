"""dicomStores.export to BigQuery of pydicom's vendor corpus, each row checked against its file.

The check reads each file independently of the emulator (plain pydicom) and compares value by value.
Through google-api-python-client against the running emulator; filter files live in fake-gcs-server; tables are
DuckDB files under the emulator's data directory (catalog = project, schema = dataset), read back with DuckDB.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

import pydicom
import pydicom.multival
import pydicom.tag
import pydicom.valuerep
import pytest
from pydicom.dataset import Dataset

from .helpers import column_types, export, new_table, rows, uri

pytestmark = pytest.mark.integration


_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW"}
_TEXT_VRS = {"AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UI", "UR", "UT", "DS", "IS"}
_INT_VRS = {"SL", "SS", "UL", "US", "SV", "UV", "US or SS"}


def _read_independently(path: Path) -> pydicom.Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            return ds
        except Exception:
            return None


def _column_name(tag: pydicom.tag.BaseTag) -> str | None:
    """The keyword column a tag gets, or None when it has no keyword (private, unknown, non-base repeater)."""
    from pydicom import datadict

    if tag.is_private or (not datadict.dictionary_has_tag(tag) and not datadict.repeater_has_tag(tag)):
        return None
    keyword = datadict.keyword_for_tag(tag)
    if tag not in datadict.DicomDictionary:
        mask = datadict.mask_match(tag)
        if mask is None or int(mask.replace("x", "0"), 16) != tag:
            return None
    return keyword or None


class CorpusChecker:
    """Compares one exported row with plain pydicom's reading of the file it came from."""

    def __init__(self) -> None:
        self.checked = 0
        self.tolerated: list[str] = []  # narrow, explained exceptions that did occur
        self.problems: list[str] = []
        self.types: dict[str, str] = {}  # top-level column → the DuckDB type its VR and VM call for

    def _expect(self, condition: object, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def check(self, ds: pydicom.Dataset, row: dict, where: str) -> None:
        dropped = {d["TagName"] for d in row["DroppedTags"]}
        elements = self._elements(ds.file_meta, ds) if ds.file_meta else self._elements(ds)
        self._dataset(elements, row, "", dropped, where)

    @staticmethod
    def _elements(*datasets: Dataset) -> list[tuple[pydicom.DataElement, str | None]]:
        """(element, VR as encoded in the file) pairs: the raw VR is read before pydicom converts the element."""
        out = []
        for ds in datasets:
            raw = {tag: ds.get_item(tag).VR for tag in ds.keys()}  # noqa: SIM118 - Dataset iterates elements
            out += [(ds[tag], raw[tag]) for tag in ds.keys()]  # noqa: SIM118
        return out

    def _dataset(self, elements: list[tuple[pydicom.DataElement, str | None]], row: dict,
                 prefix: str, dropped: set[str], where: str) -> None:
        others = {o["Tag"]: o["Data"] for o in row.get("OtherElements") or []}
        for elem, _raw_vr in elements:
            tag = elem.tag
            name = _column_name(tag)
            label = f"{where}: {prefix}{name or f'Tag_{int(tag):08X}'}"
            if tag.element == 0:
                self._expect(name not in row, f"{label}: group length exported")
                continue
            self.checked += 1
            # Elements a file encodes as UN are compared with the VR pydicom resolves, as the store reads them.
            if elem.VR in _BINARY_VRS or (elem.VR != "SQ" and isinstance(elem.value, bytes)):
                self._expect(f"{prefix}{name or f'Tag_{int(tag):08X}'}" in dropped, f"{label}: binary not dropped")
                self._expect(name is None or row.get(name) is None, f"{label}: binary exported")
                continue
            if name is None:
                key = f"Tag_{int(tag):08X}"
                if elem.VR == "SQ":
                    self._items(elem, row.get(key), f"{prefix}{key}.", dropped, label)
                else:
                    expected = [self._text(v) for v in self._values(elem)]
                    got = others.get(key)
                    if elem.VR in ("DS", "IS") and got is not None:  # numbers in the store: compare numbers
                        got, expected = [float(g) for g in got], [float(e) for e in expected]
                    self._expect(got == expected, f"{label}: OtherElements {got!r} != {expected!r}")
                continue
            if not prefix:
                self._record_type(elem, name)
            if elem.VR == "SQ":
                self._items(elem, row.get(name), f"{prefix}{name}.", dropped, label)
                continue
            if name not in row:
                self.problems.append(f"{label}: no column")
                continue
            self._value(elem, row[name], f"{prefix}{name}" in dropped, label)

    def _items(self, elem, value: list | None, prefix: str, dropped: set[str], label: str) -> None:
        items = list(elem.value or [])
        if not self._exportable(elem):
            return  # no exportable element in any item: possibly no column at all (no empty RECORDs)
        if value is None or len(value) != len(items):
            self.problems.append(f"{label}: {len(items)} items, got {value!r}")
            return
        for item, exported in zip(items, value, strict=True):
            self._dataset(self._elements(item), exported, prefix, dropped, label)

    def _record_type(self, elem, name: str) -> None:
        from pydicom import datadict

        dict_vr = datadict.dictionary_VR(elem.tag)
        vr = elem.VR if dict_vr in ("US or OW", "US or SS or OW", "NONE") else dict_vr
        pn_group = ("STRUCT(FamilyName VARCHAR, GivenName VARCHAR, MiddleName VARCHAR, NamePrefix VARCHAR,"
                    " NameSuffix VARCHAR)")
        base = {"DA": "DATE", "TM": "TIME", "DT": "TIMESTAMP", "FL": "DOUBLE", "FD": "DOUBLE", "AT": "BIGINT",
                "PN": f"STRUCT(Alphabetic {pn_group}, Ideographic {pn_group}, Phonetic {pn_group})",
                "SQ": "STRUCT"}.get(vr) or ("VARCHAR" if vr in _TEXT_VRS else "BIGINT" if vr in _INT_VRS else vr)
        self.types[name] = base + ("[]" if vr == "SQ" or datadict.dictionary_VM(elem.tag) != "1" else "")

    @classmethod
    def _exportable(cls, sequence) -> bool:
        """Whether any item of a sequence holds a non-binary element, at any depth."""
        return any(e.VR not in _BINARY_VRS and e.tag.element != 0 and (e.VR != "SQ" or cls._exportable(e))
                   for item in sequence.value or [] for e in item)

    @staticmethod
    def _values(elem) -> list:
        value = elem.value
        if value is None or value == "":
            return []
        return list(value) if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]

    @staticmethod
    def _text(value) -> str:
        if isinstance(value, pydicom.valuerep.PersonName):
            return "=".join(g.rstrip() for g in (value.alphabetic, value.ideographic, value.phonetic)).rstrip("=")
        if isinstance(value, pydicom.tag.BaseTag):
            return f"{int(value):08X}"
        return str(value).strip(" \0")

    def _value(self, elem, got, dropped: bool, label: str) -> None:
        from pydicom import datadict, valuerep

        multiple = datadict.dictionary_VM(elem.tag) != "1"
        values = self._values(elem)
        dict_vr = datadict.dictionary_VR(elem.tag)
        vr = elem.VR if dict_vr in ("US or OW", "US or SS or OW", "NONE") else dict_vr
        try:
            if vr in _TEXT_VRS:
                expected = [self._text(v) for v in values]
                if vr in ("DS", "IS") and not dropped:  # strings in the table, numbers in the store: compare numbers
                    got_numbers = [float(g) if g else None for g in (got if multiple else [got] if got else [])]
                    want = [float(e) if e else None for e in expected]
                    self._expect(got_numbers == want, f"{label}: {got!r} != {expected!r}")
                    return
                want_value = expected if multiple else ("\\".join(expected) if expected else None)
            elif vr == "PN":
                groups = [{"Alphabetic": self._pn(v.alphabetic), "Ideographic": self._pn(v.ideographic),
                           "Phonetic": self._pn(v.phonetic)} for v in values]
                want = [g if any(g.values()) else None for g in groups]
                want_value = want if multiple else (want[0] if want else None)
            elif vr == "DA":
                want = [valuerep.DA(str(v)) for v in values]
                want_value = want if multiple else (want[0] if want else None)
            elif vr == "TM":
                want = [valuerep.TM(str(v)) for v in values]
                want_value = want if multiple else (want[0] if want else None)
            elif vr == "DT":
                want = [self._utc(valuerep.DT(str(v))) for v in values]
                want_value = want if multiple else (want[0] if want else None)
            elif vr in ("FL", "FD"):
                want = [None if v != v else float(v) for v in values]
                want_value = want if multiple else (want[0] if len(want) == 1 else None)
                if not multiple and len(want) > 1:
                    self._expect(got is None and dropped, f"{label}: several values in a VM-1 column")
                    return
            elif vr in _INT_VRS or vr == "AT":
                want = [int(v) for v in values]
                if not multiple and len(want) > 1:
                    self._expect(got is None and dropped, f"{label}: several values in a VM-1 column")
                    return
                want_value = want if multiple else (want[0] if want else None)
            else:
                self.problems.append(f"{label}: unexpected VR {vr}")
                return
        except ValueError:
            if vr in ("DS", "IS"):  # not a number, but the column is STRING: the text is kept as it is
                text = [str(v).strip() for v in values]
                self._expect(got == (text if multiple else "\\".join(text)), f"{label}: {got!r} != {text!r}")
                return
            # pydicom cannot read the value either: NULL in the table, named in DroppedTags. One narrow
            # exception: ACR-NEMA "HH:MM:SS" times (PS3.5 asks readers to accept them; pydicom does not).
            if vr == "TM" and got is not None and all(":" in str(v) for v in values):
                self.tolerated.append(f"{label}: ACR-NEMA time {values!r}")
                return
            self._expect(got is None and dropped, f"{label}: unreadable value {values!r} exported as {got!r}")
            return
        self._expect(not dropped, f"{label}: readable value {values!r} listed in DroppedTags")
        self._expect(got == want_value, f"{label}: {got!r} != {want_value!r}")

    @staticmethod
    def _pn(group: str | None) -> dict | None:
        if not group or not group.strip("^ "):
            return None  # a name without components
        parts = group.split("^")
        parts = [*parts[:4], "^".join(parts[4:])] if len(parts) > 5 else parts + [""] * (5 - len(parts))
        keys = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
        return {k: (p.rstrip() or None) for k, p in zip(keys, parts, strict=True)}

    @staticmethod
    def _utc(value: datetime | None) -> datetime | None:
        from datetime import UTC

        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)


def test_vendor_corpus_rows_match_an_independent_reading_of_each_file(emulator, healthcare, new_store, new_bucket):
    """Every readable corpus file is exported (re-encodings of one instance go to separate stores, all
    appended to one table) and each row is compared, element by element, with plain pydicom's reading."""
    from dicom_samples import vendor_corpus
    from tests.helpers import run_import

    files = vendor_corpus()
    readable = {path: ds for path in files if (ds := _read_independently(path)) is not None}
    layers: dict[tuple[str, str, str], int] = {}
    layer_of: dict[Path, int] = {}
    for path, ds in readable.items():
        uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        layer_of[path] = layers[uids] = layers.get(uids, -1) + 1
    bucket, table = new_bucket(), new_table(emulator)
    stores = []
    for layer in range(max(layer_of.values()) + 1):
        store = new_store()
        stores.append(store)
        for path in (p for p, n in layer_of.items() if n == layer):
            bucket.blob(f"layer{layer}/{path.name}").upload_from_filename(str(path))
        run_import(healthcare, store, f"gs://{bucket.name}/layer{layer}/*")
        operation = export(healthcare, store, {"tableUri": uri(table), "writeDisposition": "WRITE_APPEND",
                                               "includeSourceStore": True})
        assert "error" not in operation, operation

    exported = rows(emulator, table)
    by_key = {(r["SourceDicomStore"], r["SOPInstanceUID"]): r for r in exported}
    assert len(by_key) == len(exported)
    checker = CorpusChecker()
    missing = []
    for path, ds in readable.items():
        row = by_key.pop((stores[layer_of[path]].name, str(ds.SOPInstanceUID)), None)
        if row is None:
            missing.append(path.name)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the corpus's deliberately invalid values
            checker.check(ds, row, path.name)
    assert not by_key, f"rows without a file: {list(by_key)}"
    # Files plain pydicom reads but the store refuses have no row: truncated ones, and (a store limitation,
    # dicom.py) rtdose_rle*, whose StudyInstanceUID is encoded with VR UN.
    assert set(missing) <= {"MR_truncated.dcm", "rtplan_truncated.dcm", "rtdose_rle.dcm",
                            "rtdose_rle_1frame.dcm"}, missing
    types = column_types(emulator, table)
    for name, want in checker.types.items():
        if want == "STRUCT[]":  # a sequence: a list of structs (whose fields the values above checked)
            assert name not in types or (types[name].startswith("STRUCT(") and types[name].endswith(")[]")), name
        else:
            assert types.get(name) == want, f"{name}: {types.get(name)} != {want}"
    assert not checker.problems, "\n".join(checker.problems)
    assert len(exported) >= 100 and checker.checked > 5000
    assert len(checker.tolerated) <= 5, checker.tolerated
    print(f"{len(exported)} rows, {checker.checked} elements and {len(checker.types)} column types checked;"
          f" tolerated: {checker.tolerated}")
