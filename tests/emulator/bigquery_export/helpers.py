"""What the BigQuery export tests share: STOW, export and wait, fresh tables, the warehouse read back with DuckDB."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from local_bigquery.warehouse import create_dataset
from tests.conftest import PROJECT, StoreRef
from tests.helpers import wait

REPO = Path(__file__).resolve().parents[3]


def stow(emulator, store: StoreRef, parts: list[bytes]) -> None:
    """Store Part-10 files in one multipart STOW-RS request."""
    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    answer = requests.post(f"{emulator.url}/v1/{store.name}/dicomWeb/studies", data=body, timeout=60,
                           headers={"Content-Type": content_type})
    assert answer.status_code == 200, answer.text


def export(healthcare, store: StoreRef, destination: dict, filter_uri: str | None = None) -> dict:
    body: dict = {"bigqueryDestination": destination}
    if filter_uri:
        body["filterConfig"] = {"resourcePathsGcsUri": filter_uri}
    operation = healthcare.projects().locations().datasets().dicomStores().export(name=store.name, body=body).execute()
    return wait(healthcare, operation)


def new_table(emulator, project: str = PROJECT) -> tuple[str, str, str]:
    """A fresh (project, dataset, table) triple; its dataset is created (exports never create datasets)."""
    dataset = f"bq_{uuid.uuid4().hex[:10]}"
    create_dataset(emulator.data_dir, project, dataset)
    return project, dataset, "instances"


def uri(table: tuple[str, str, str]) -> str:
    return "bq://{}.{}.{}".format(*table)


@contextmanager
def warehouse(emulator, project: str = PROJECT) -> Iterator[duckdb.DuckDBPyConnection]:
    """The project's warehouse database, opened read-only with plain DuckDB (as any other process would)."""
    con = duckdb.connect(str(emulator.data_dir / "warehouse" / f"{project}.duckdb"), read_only=True)
    try:
        yield con
    finally:
        con.close()


def qualified(table: tuple[str, str, str]) -> str:
    return f'"{table[1]}"."{table[2]}"'


def rows(emulator, table: tuple[str, str, str], columns: str = "*", order: str = "SOPInstanceUID") -> list[dict]:
    with warehouse(emulator, table[0]) as con:
        cursor = con.execute(f"SELECT {columns} FROM {qualified(table)} ORDER BY {order}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def column_types(emulator, table: tuple[str, str, str]) -> dict[str, str]:
    with warehouse(emulator, table[0]) as con:
        relation = con.sql(f"SELECT * FROM {qualified(table)} LIMIT 0")
        return {name: str(dtype) for name, dtype in zip(relation.columns, relation.types, strict=True)}


def table_exists(emulator, table: tuple[str, str, str]) -> bool:
    path = emulator.data_dir / "warehouse" / f"{table[0]}.duckdb"
    if not path.exists():
        return False
    with warehouse(emulator, table[0]) as con:
        return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ?"
                                " AND table_name = ?", [table[1], table[2]]).fetchone()[0])


def make_table(emulator, table: tuple[str, str, str], old_rows: int) -> None:
    """What `bq mk` + a load would leave: a table of our own schema, with `old_rows` rows marked 'old'."""
    path = emulator.data_dir / "warehouse" / f"{table[0]}.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{table[1]}"')
        con.execute(f"CREATE TABLE {qualified(table)} (SOPInstanceUID VARCHAR, Marker VARCHAR)")
        for index in range(old_rows):
            con.execute(f"INSERT INTO {qualified(table)} VALUES (?, 'old')", [f"0.{index}"])
    finally:
        con.close()


def part10(ds: Dataset, sop_class: str = SecondaryCaptureImageStorage) -> bytes:
    """Serialise a dataset as Part 10 with fresh UIDs where it has none."""
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword not in ds:
            setattr(ds, keyword, generate_uid())
    ds.SOPClassUID = sop_class
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def rich_instance() -> tuple[Dataset, bytes]:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Doe^John^Quincy^Dr^Jr=山田^太郎=やまだ^たろう"
    ds.OperatorsName = ["Smith^Ann", "Lee^Bo"]
    ds.PatientID = "A\\B"  # two values in a VM-1 element: kept, joined with a backslash
    ds.StudyDate = "20240102"
    ds.StudyTime = "101530.25"
    ds.ContentTime = "0915"
    ds.AcquisitionDateTime = "20240102101530.123456+0100"
    ds.add_new(0x0008002A, "DT", "20240102101530.123456+0100")
    ds.PatientBirthDate = "19700230"  # no 30 February: NULL, listed in DroppedTags
    ds.SliceThickness = "1.250"
    ds.InstanceNumber = "7"
    ds.ImagePositionPatient = ["0", "-12.5", "3"]
    ds.FrameIncrementPointer = 0x00181063
    ds.Rows = 4
    ds.add_new(0x00189087, "FD", 1000.0)  # DiffusionBValue
    ds.add_new(0x00280106, "US", 3)  # SmallestImagePixelValue, dictionary VR "US or SS"
    ds.add_new(0x60000010, "US", 16)  # OverlayRows, base repeating group
    ds.add_new(0x60020010, "US", 32)  # second overlay: no column of its own
    ds.add_new(0x0018FFF0, "LO", "unknown public")  # not in the dictionary
    ds.ReferencedImageSequence = Sequence([Dataset(), Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = "1.2.3"
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence[1].ReferencedSOPClassUID = "1.2.5"
    ds.ReferencedImageSequence[1].add_new(0x00090010, "LO", "ACME")
    ds.ReferencedImageSequence[1].add_new(0x00091001, "LO", "nested private")
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", ["one", "two"])
    ds.add_new(0x00091002, "US", [5, 6])
    ds.add_new(0x00091003, "OB", b"\x01\x02")
    inner = Dataset()
    inner.CodeValue = "C1"
    ds.add_new(0x00091004, "SQ", Sequence([inner]))
    ds.add_new(0x00191001, "UN", b"raw")
    ds.IconImageSequence = Sequence([Dataset()])
    ds.IconImageSequence[0].Rows = 2
    ds.IconImageSequence[0].add_new(0x7FE00010, "OB", b"\0" * 8)
    ds.add_new(0x00081115, "SQ", Sequence())  # ReferencedSeriesSequence, present but empty
    ds.add_new(0x7FE00010, "OB", b"\0" * 32)
    return ds, part10(ds)
