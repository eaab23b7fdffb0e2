"""Durable state of the emulator: a SQLite index (WAL) plus content-addressed blob files. Knows no HTTP.

Durability: a blob is written to a staging file and renamed into place before its index row is
committed, so an instance reported as stored survives ``kill -9`` (WAL with synchronous=NORMAL keeps
every committed transaction across a process crash) and a crash mid-write leaves at worst a staging
file or an unreferenced blob, both swept away at the next start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dicom.parsing import ParsedInstance
from ..errors import AlreadyExists, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dicom_stores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    dataset TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    store_id INTEGER NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    storage_class TEXT NOT NULL,
    metadata TEXT NOT NULL,
    metadata_size INTEGER NOT NULL,
    create_time TEXT NOT NULL,
    update_time TEXT NOT NULL,
    number_texts TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (store_id, study_uid, series_uid, sop_uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS instances_by_sop ON instances (store_id, sop_uid);
CREATE TABLE IF NOT EXISTS operations (
    name TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    body TEXT NOT NULL,
    done INTEGER NOT NULL
);
"""

STORED, DUPLICATE, CONFLICT = "stored", "duplicate", "conflict"
_DONE_OPERATIONS_KEPT = 10_000  # finished operations answered from memory (clients poll the recent ones)


@dataclass(frozen=True)
class StagedInstance:
    """A parsed instance whose bytes sit in a staging file, ready to be committed."""

    parsed: ParsedInstance
    staging_path: str
    storage_class: str


@dataclass(frozen=True)
class InstanceRecord:
    store_id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    sha256: str
    size: int
    storage_class: str
    metadata: str
    metadata_size: int
    create_time: str
    update_time: str
    number_texts: str = ""  # ParsedInstance.number_texts_json(): exact DS/IS texts, "" when none differ


_INSTANCE_COLUMNS = ", ".join(InstanceRecord.__dataclass_fields__)
_INSTANCE_PLACEHOLDERS = ", ".join("?" * len(InstanceRecord.__dataclass_fields__))


class Storage:
    """SQLite index + blob files under one data directory."""

    def __init__(self, data_dir: str | os.PathLike[str]):
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "blobs"
        self.staging_dir = self.data_dir / "staging"
        self.log_dir = self.data_dir / "operation-logs"
        for directory in (self.blob_dir, self.staging_dir, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._db_path = str(self.data_dir / "index.sqlite3")
        self._local = threading.local()
        self._write_lock = threading.Lock()
        # Bodies this process read or wrote, as JSON text (each get parses its own copy). Every request names a
        # dataset and store and every poll an operation: reading them from SQLite (a read transaction, pages
        # re-read after each write by another thread's connection) cost more than the rest of a poll. The
        # index has one writer, this process, so only its own writes change them: those clear the entries
        # they touch and bump _generation, so a read that raced with a change does not fill the cache.
        self._cache_lock = threading.Lock()
        self._generation = 0
        self._dataset_cache: dict[str, tuple[str]] = {}
        self._store_cache: dict[str, tuple[int, str]] = {}
        self._done_operations: OrderedDict[str, str] = OrderedDict()
        with self._write_lock:
            self._db().executescript(_SCHEMA)
            columns = {row[1] for row in self._db().execute("PRAGMA table_info(instances)")}
            if "number_texts" not in columns:  # a data directory from before the column existed
                self._db().execute("ALTER TABLE instances ADD COLUMN number_texts TEXT NOT NULL DEFAULT ''")
        self._sweep()

    # --- connections -------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=OFF")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time; the transaction commits when the block exits without error."""
        with self._write_lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _sweep(self) -> None:
        """Remove what a crash may have left: staging files and blobs no index row references."""
        for leftover in self.staging_dir.iterdir():
            leftover.unlink(missing_ok=True)
        known = {
            (str(store_id), sha) for store_id, sha in self._db().execute("SELECT store_id, sha256 FROM instances")
        }
        for store_dir in self.blob_dir.iterdir():
            for blob in store_dir.glob("*/*"):
                if (store_dir.name, blob.name) not in known:
                    blob.unlink(missing_ok=True)

    def _forget(self) -> None:
        """After a change to datasets, stores or operations other than saving one: drop the cached bodies."""
        with self._cache_lock:
            self._generation += 1
            self._dataset_cache.clear()
            self._store_cache.clear()
            self._done_operations.clear()

    def _cache_generation(self) -> int:
        with self._cache_lock:
            return self._generation

    def reset(self) -> None:
        """Forget everything (emulator-only control)."""
        with self._write() as db:
            for table in ("datasets", "dicom_stores", "instances", "operations"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        self._forget()
        for directory in (self.blob_dir, self.log_dir):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, exist_ok=True)

    # --- datasets ----------------------------------------------------------------------------

    def create_dataset(self, name: str, parent: str, body: dict[str, Any]) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"dataset {name} already exists")
            db.execute("INSERT INTO datasets VALUES (?, ?, ?)", (name, parent, json.dumps(body)))
        self._forget()

    def _read_through(self, cache: dict[str, Any], name: str, sql: str, missing: str) -> Any:
        """The row `sql` selects for `name`, from `cache` or SQLite (then cached unless a change raced it)."""
        with self._cache_lock:
            row, generation = cache.get(name), self._generation
        if row is None:
            row = self._db().execute(sql, (name,)).fetchone()
            if row is None:
                raise NotFound(missing)
            with self._cache_lock:
                if generation == self._generation:
                    cache[name] = row
        return row

    def get_dataset(self, name: str) -> dict[str, Any]:
        (text,) = self._read_through(self._dataset_cache, name, "SELECT body FROM datasets WHERE name = ?",
                                     f"dataset {name} not found")
        return json.loads(text)

    def put_dataset(self, name: str, body: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("UPDATE datasets SET body = ? WHERE name = ?", (json.dumps(body), name))
        self._forget()

    def list_datasets(self, parent: str) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT body FROM datasets WHERE parent = ? ORDER BY name", (parent,))
        return [json.loads(body) for (body,) in rows]

    def delete_dataset(self, name: str) -> None:
        store_ids = [
            store_id for (store_id,) in self._db().execute("SELECT id FROM dicom_stores WHERE dataset = ?", (name,))
        ]
        with self._write() as db:
            if db.execute("DELETE FROM datasets WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"dataset {name} not found")
            for store_id in store_ids:
                db.execute("DELETE FROM instances WHERE store_id = ?", (store_id,))
            db.execute("DELETE FROM dicom_stores WHERE dataset = ?", (name,))
            db.execute("DELETE FROM operations WHERE dataset = ?", (name,))
        self._forget()
        for store_id in store_ids:
            shutil.rmtree(self.blob_dir / str(store_id), ignore_errors=True)

    # --- DICOM stores --------------------------------------------------------------------------

    def create_store(self, name: str, dataset: str, body: dict[str, Any]) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM dicom_stores WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"DICOM store {name} already exists")
            db.execute("INSERT INTO dicom_stores (name, dataset, body) VALUES (?, ?, ?)",
                       (name, dataset, json.dumps(body)))
        self._forget()

    def get_store(self, name: str) -> tuple[int, dict[str, Any]]:
        """Return (internal store id, DicomStore body)."""
        store_id, text = self._read_through(self._store_cache, name,
                                            "SELECT id, body FROM dicom_stores WHERE name = ?",
                                            f"DICOM store {name} not found")
        return store_id, json.loads(text)

    def put_store(self, name: str, body: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("UPDATE dicom_stores SET body = ? WHERE name = ?", (json.dumps(body), name))
        self._forget()

    def list_stores(self, dataset: str) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT body FROM dicom_stores WHERE dataset = ? ORDER BY name", (dataset,))
        return [json.loads(body) for (body,) in rows]

    def delete_store(self, name: str) -> None:
        store_id, _ = self.get_store(name)
        with self._write() as db:
            db.execute("DELETE FROM instances WHERE store_id = ?", (store_id,))
            db.execute("DELETE FROM dicom_stores WHERE id = ?", (store_id,))
        self._forget()
        shutil.rmtree(self.blob_dir / str(store_id), ignore_errors=True)

    # --- instances -----------------------------------------------------------------------------

    def staging_file(self) -> str:
        return str(self.staging_dir / f"{uuid.uuid4().hex}.tmp")

    def stage(self, data: bytes) -> str:
        """Write bytes to a fresh staging file and return its path."""
        path = self.staging_file()
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    def blob_path(self, store_id: int, sha256: str) -> Path:
        return self.blob_dir / str(store_id) / sha256[:2] / sha256

    def commit_instances(self, store_id: int, staged: list[StagedInstance], now: str) -> list[str]:
        """Store a batch in one transaction; return STORED, DUPLICATE or CONFLICT for each.

        Identical bytes under the same UIDs are a duplicate (accepted, nothing changes); different
        bytes under the same UIDs are a conflict and never overwrite the stored instance.
        """
        outcomes: list[str] = []
        with self._write() as db:
            for item in staged:
                p = item.parsed
                row = db.execute(
                    "SELECT sha256 FROM instances WHERE store_id = ? AND study_uid = ? AND series_uid = ?"
                    " AND sop_uid = ?",
                    (store_id, p.study_uid, p.series_uid, p.sop_uid),
                ).fetchone()
                if row is not None:
                    outcomes.append(DUPLICATE if row[0] == p.sha256 else CONFLICT)
                    os.unlink(item.staging_path)
                    continue
                target = self.blob_path(store_id, p.sha256)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item.staging_path, target)
                metadata = p.metadata_json()
                db.execute(
                    f"INSERT INTO instances ({_INSTANCE_COLUMNS}) VALUES ({_INSTANCE_PLACEHOLDERS})",  # noqa: S608
                    (store_id, p.study_uid, p.series_uid, p.sop_uid, p.sop_class_uid, p.transfer_syntax_uid,
                     p.sha256, p.size, item.storage_class, metadata, len(metadata.encode()), now, now,
                     p.number_texts_json()),
                )
                outcomes.append(STORED)
        return outcomes

    def find_instances(
        self,
        store_id: int,
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[InstanceRecord]:
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE store_id = ?"  # noqa: S608 - fixed columns
        args: list[Any] = [store_id]
        for column, value in (("study_uid", study_uid), ("series_uid", series_uid), ("sop_uid", sop_uid)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += " ORDER BY study_uid, series_uid, sop_uid"
        return [InstanceRecord(*row) for row in self._db().execute(sql, args)]

    def delete_instances(self, store_id: int, records: list[InstanceRecord]) -> None:
        with self._write() as db:
            db.executemany(
                "DELETE FROM instances WHERE store_id = ? AND study_uid = ? AND series_uid = ? AND sop_uid = ?",
                [(store_id, r.study_uid, r.series_uid, r.sop_uid) for r in records],
            )
        for record in records:
            self.blob_path(store_id, record.sha256).unlink(missing_ok=True)

    def set_storage_class(self, store_id: int, records: list[InstanceRecord], storage_class: str,
                          now: str) -> list[InstanceRecord]:
        """Change the storage class of `records`; return the updated records (unchanged ones are skipped)."""
        changed = [r for r in records if r.storage_class != storage_class]
        with self._write() as db:
            db.executemany(
                "UPDATE instances SET storage_class = ?, update_time = ? WHERE store_id = ? AND study_uid = ?"
                " AND series_uid = ? AND sop_uid = ?",
                [(storage_class, now, store_id, r.study_uid, r.series_uid, r.sop_uid) for r in changed],
            )
        return [dataclasses.replace(r, storage_class=storage_class, update_time=now) for r in changed]

    def store_metrics(self, store_id: int) -> dict[str, int]:
        row = self._db().execute(
            "SELECT COUNT(DISTINCT study_uid), COUNT(DISTINCT study_uid || '/' || series_uid), COUNT(*),"
            " COALESCE(SUM(metadata_size), 0), COALESCE(SUM(size), 0) FROM instances WHERE store_id = ?",
            (store_id,),
        ).fetchone()
        keys = ("studyCount", "seriesCount", "instanceCount", "structuredStorageSizeBytes", "blobStorageSizeBytes")
        return dict(zip(keys, row, strict=True))

    # --- operations ----------------------------------------------------------------------------

    def save_operation(self, name: str, dataset: str, body: dict[str, Any]) -> None:
        text, done = json.dumps(body), bool(body.get("done"))
        generation = self._cache_generation()
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO operations VALUES (?, ?, ?, ?)", (name, dataset, text, int(done)))
        with self._cache_lock:
            self._done_operations.pop(name, None)
            if done and generation == self._generation:  # a finished operation never changes again
                self._done_operations[name] = text
                if len(self._done_operations) > _DONE_OPERATIONS_KEPT:
                    self._done_operations.popitem(last=False)

    def get_operation(self, name: str) -> dict[str, Any]:
        with self._cache_lock:
            text = self._done_operations.get(name)
        if text is None:
            row = self._db().execute("SELECT body FROM operations WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"operation {name} not found")
            text = row[0]
        return json.loads(text)

    def list_operations(self, dataset: str) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT body FROM operations WHERE dataset = ? ORDER BY name DESC", (dataset,))
        return [json.loads(body) for (body,) in rows]

    def unfinished_operations(self) -> list[dict[str, Any]]:
        return [json.loads(body) for (body,) in self._db().execute("SELECT body FROM operations WHERE done = 0")]

    def operation_log_path(self, operation_id: str) -> Path:
        return self.log_dir / f"{operation_id}.jsonl"
