"""The local warehouse behind `bq://` destinations: DuckDB files under DATA_DIR/warehouse. Knows no HTTP.

Layout: one database file per project, ``warehouse/<project>.duckdb``; BigQuery dataset = DuckDB schema,
table = table. A reader attaches every file read-only under its project's name, so
``project.dataset.table`` resolves as DuckDB's catalog.schema.table. Every statement names tables in full,
catalog included: with two parts, ``"bench"."t"`` is ambiguous when the dataset is named like the catalog
(``bq://bench.bench.t``; a writer's catalog is the file's name up to its first dot).

Concurrency: DuckDB lets one process open a file read-write, or any number of processes read-only, never
both at once. The emulator therefore opens a file only while it has writes to do and closes it as soon as
none are waiting (or after `_MAX_HOLD` seconds), so other processes can query between writes; each side
retries briefly while the other holds the file. Inside this process the writers (operations, streaming)
queue per file: the first becomes the leader, opens the file once and runs every queued write in its own
transaction, so a burst of small exports pays for one open and one checkpoint instead of one each.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import quote, unquote

import duckdb

from .schema import DATE, FLOAT, INTEGER, JSON, RECORD, STRING, TIME, TIMESTAMP, Field, SchemaConflict

WAREHOUSE_DIR = "warehouse"
WRITE_LOCK_TIMEOUT = 30.0  # seconds a write waits for readers in other processes to let go
READ_LOCK_TIMEOUT = 10.0
_RETRY_SLEEP = 0.02
# A leader closes the file after holding it this long, so readers in other processes get their turn.
_MAX_HOLD = 0.5
# Writes of at least this many rows run with DuckDB's thread pool (one thread per core), smaller ones in one.
_PARALLEL_ROWS = 1000
_THREADS = max(1, os.cpu_count() or 1)
# read_json refuses larger JSON objects; DICOM metadata with big sequences can make long rows.
_MAX_OBJECT_SIZE = 1 << 30

_DUCKDB_TYPES = {STRING: "VARCHAR", INTEGER: "BIGINT", FLOAT: "DOUBLE", DATE: "DATE", TIME: "TIME",
                 TIMESTAMP: "TIMESTAMP", JSON: "JSON"}
# DuckDB type ids read back as BigQuery types (a table made by hand may use narrower or wider ones).
_FROM_DUCKDB = {
    "varchar": STRING,
    **dict.fromkeys(("tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
                     "ubigint"), INTEGER),
    **dict.fromkeys(("float", "double", "decimal"), FLOAT),
    "date": DATE, "time": TIME,
    **dict.fromkeys(("timestamp", "timestamp with time zone", "timestamp_s", "timestamp_ms", "timestamp_ns"),
                    TIMESTAMP),
}


class WarehouseBusy(Exception):
    """Another process kept the database file locked for longer than the timeout."""


class DatasetNotFound(Exception):
    """The BigQuery dataset of a write does not exist: as in BigQuery, datasets are created explicitly."""


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def uri(self) -> str:
        return f"bq://{self}"


@dataclass
class WriteResult:
    rows_before: int | None  # None: the table did not exist
    rows_written: int
    replaced: bool = False
    added_columns: list[str] = field(default_factory=list)
    widened_columns: list[str] = field(default_factory=list)


def warehouse_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / WAREHOUSE_DIR


def database_path(data_dir: str | os.PathLike[str], project: str) -> Path:
    return warehouse_dir(data_dir) / f"{quote(project, safe='')}.duckdb"


def project_databases(data_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Every project that has a database file, with its path."""
    directory = warehouse_dir(data_dir)
    if not directory.is_dir():
        return {}
    return {unquote(path.stem): path for path in sorted(directory.glob("*.duckdb"))}


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_busy(exc: BaseException) -> bool:
    """Whether the file is held elsewhere right now (worth retrying), by another process or by this one."""
    text = str(exc).lower()
    return ((isinstance(exc, duckdb.IOException) and "lock" in text)  # another process
            # this process (e.g. a query run inside the emulator's process while it writes, or the reverse)
            or (isinstance(exc, duckdb.ConnectionException) and "different configuration" in text)
            or (isinstance(exc, duckdb.ResourceInUseException) and "already attached" in text))


def _with_retry(action: Callable[[], duckdb.DuckDBPyConnection], timeout: float,
                what: str) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout
    delay = _RETRY_SLEEP
    while True:
        try:
            return action()
        except duckdb.Error as exc:
            if not _is_busy(exc):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(f"{what} stayed in use elsewhere for {timeout:g} s: {exc}") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _connect_for_write(path: Path, timeout: float) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _with_retry(lambda: duckdb.connect(str(path)), timeout, f"warehouse database {path}")
    con.execute("SET TimeZone = 'UTC'")  # rows carry UTC times; a TIMESTAMPTZ column must read them so
    # One thread: DuckDB's parallel operators cost more CPU than they save on the small writes exports and
    # streaming make (tens of rows; bench/README.md); write_rows raises it for large ones, where parallel
    # reading saves wall time.
    con.execute("SET threads = 1")
    return con


class _Write:
    """One caller's unit of work on the open connection, and its outcome."""

    def __init__(self, work: Callable[[duckdb.DuckDBPyConnection, str], object]):
        self.work = work
        self.finished = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None

    def run(self, con: duckdb.DuckDBPyConnection, catalog: str) -> None:
        try:
            self.result = self.work(con, catalog)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            self.error = exc
        finally:
            self.finished.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.finished.set()


class _FileWriter:
    """The queue of writes for one database file; whoever finds no leader leads (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = path
        self._guard = threading.Lock()
        self._queue: deque[_Write] = deque()
        self._leading = False

    def submit(self, work: Callable[[duckdb.DuckDBPyConnection, str], object], timeout: float) -> object:
        """Run `work(connection, catalog)`; catalog is the name the open file goes by in that connection."""
        write = _Write(work)
        with self._guard:
            self._queue.append(write)
            lead, self._leading = not self._leading, True
        if lead:
            self._lead(timeout)
        write.finished.wait()
        if write.error is not None:
            raise write.error
        return write.result

    def _take(self) -> list[_Write]:
        with self._guard:
            taken = list(self._queue)
            self._queue.clear()
            if not taken:
                self._leading = False  # under the guard: a later submit() sees no leader and leads
            return taken

    def _lead(self, timeout: float) -> None:
        while writes := self._take():
            try:
                con = _connect_for_write(self.path, timeout)
            except BaseException as exc:
                for write in writes:
                    write.fail(exc)
                continue
            try:
                opened = time.monotonic()
                try:
                    catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
                except BaseException as exc:
                    for write in writes:
                        write.fail(exc)
                    continue
                while writes:
                    for write in writes:
                        write.run(con, catalog)
                    if time.monotonic() - opened >= _MAX_HOLD:
                        break
                    with self._guard:  # more arrived while we wrote: same connection, no reopen
                        writes = list(self._queue)
                        self._queue.clear()
            finally:
                con.close()  # checkpoints; readers in other processes can attach again


_writers: dict[str, _FileWriter] = {}
_writers_guard = threading.Lock()


def _writer(path: Path) -> _FileWriter:
    key = str(path.resolve())
    with _writers_guard:
        return _writers.setdefault(key, _FileWriter(path))


def connect_read_only(data_dir: str | os.PathLike[str],
                      timeout: float = READ_LOCK_TIMEOUT) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with every project's database attached read-only under the project's name."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMP columns hold UTC, as BigQuery's do
        for project, path in project_databases(data_dir).items():
            attach = f"ATTACH {quote_literal(str(path))} AS {quote_identifier(project)} (READ_ONLY)"
            _with_retry(functools.partial(con.execute, attach), timeout, f"warehouse database {path}")
    except BaseException:
        con.close()
        raise
    return con


# --- schema --------------------------------------------------------------------------------------------------

def duckdb_type(f: Field) -> str:
    if f.type == RECORD:
        assert f.fields is not None
        base = "STRUCT(" + ", ".join(f"{quote_identifier(c.name)} {duckdb_type(c)}"
                                     for c in f.fields.values()) + ")"
    elif f.type.startswith("DUCKDB:"):
        base = f.type.removeprefix("DUCKDB:")
    else:
        base = _DUCKDB_TYPES[f.type]
    return f"{base}[]" if f.repeated else base


def field_from_duckdb(name: str, dtype: duckdb.sqltypes.DuckDBPyType) -> Field:
    """The BigQuery view of an existing column; types BigQuery has no name for stay as "DUCKDB:<type>"."""
    if dtype.id == "list":
        inner = field_from_duckdb(name, cast(duckdb.sqltypes.DuckDBPyType, dtype.children[0][1]))
        if not inner.repeated:  # BigQuery has no list of lists
            inner.repeated = True
            return inner
    elif dtype.id == "struct":
        return Field(name, RECORD, False,
                     {n: field_from_duckdb(n, cast(duckdb.sqltypes.DuckDBPyType, t)) for n, t in dtype.children})
    elif str(dtype) == "JSON":
        return Field(name, JSON)
    elif dtype.id in _FROM_DUCKDB:
        return Field(name, _FROM_DUCKDB[dtype.id])
    return Field(name, f"DUCKDB:{dtype}")


def _schema_sql(catalog: str, ref: TableRef) -> str:
    return f"{quote_identifier(catalog)}.{quote_identifier(ref.dataset)}"


def _table_sql(catalog: str, ref: TableRef) -> str:
    """catalog.schema.table: "dataset"."table" alone is ambiguous when the dataset is named like the catalog."""
    return f"{_schema_sql(catalog, ref)}.{quote_identifier(ref.table)}"


def _existing_columns(con: duckdb.DuckDBPyConnection, catalog: str,
                      ref: TableRef) -> dict[str, duckdb.sqltypes.DuckDBPyType] | None:
    """The table's columns, or None when there is no such table.

    One LIMIT 0 query answers both: a missing table is a CatalogException, which leaves the transaction
    usable. (A look-up in duckdb_tables() first cost twice the query itself on a wide table.)
    """
    try:
        relation = con.sql(f"SELECT * FROM {_table_sql(catalog, ref)} LIMIT 0")  # noqa: S608 - quoted identifiers
    except duckdb.CatalogException:
        return None
    return dict(zip(relation.columns, relation.types, strict=True))


def _extend(con: duckdb.DuckDBPyConnection, catalog: str, ref: TableRef,
            existing: dict[str, duckdb.sqltypes.DuckDBPyType], fields: list[Field], result: WriteResult) -> None:
    """Add missing columns and grow RECORD columns whose nested fields grew; rows are kept."""
    current = {name.lower(): (name, field_from_duckdb(name, dtype)) for name, dtype in existing.items()}
    for needed in fields:
        hit = current.get(needed.name.lower())
        if hit is None:
            con.execute(f"ALTER TABLE {_table_sql(catalog, ref)} ADD COLUMN {quote_identifier(needed.name)}"
                        f" {duckdb_type(needed)}")
            result.added_columns.append(needed.name)
            continue
        name, have = hit
        merged = have.merged_with(needed)
        if not merged.same_shape(have):
            # DuckDB casts STRUCTs by field name: existing values keep theirs, the new fields start NULL.
            con.execute(f"ALTER TABLE {_table_sql(catalog, ref)} ALTER COLUMN {quote_identifier(name)}"
                        f" TYPE {duckdb_type(merged)}")
            result.widened_columns.append(name)


_STALE_STAGING = 24 * 3600  # seconds; a staging file this old was left by a process that died mid-write


def _stage_rows(data_dir: str | os.PathLike[str], lines: list[str]) -> Path:
    staging = warehouse_dir(data_dir) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.glob("*.ndjson"):
        with suppress(OSError):
            if time.time() - leftover.stat().st_mtime > _STALE_STAGING:
                leftover.unlink()
    path = staging / f"{uuid.uuid4().hex}.ndjson"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
        fh.write("\n")
    return path


def _read_json_sql(path: Path, columns: dict[str, str]) -> str:
    spec = ", ".join(f"{quote_literal(name)}: {quote_literal(dtype)}" for name, dtype in columns.items())
    return (f"read_json({quote_literal(str(path))}, format = 'newline_delimited', columns = {{{spec}}},"
            f" maximum_object_size = {_MAX_OBJECT_SIZE})")


def write_rows(
    data_dir: str | os.PathLike[str],
    ref: TableRef,
    fields: list[Field],
    lines: list[str],
    *,
    replace: bool = False,
    check: Callable[[int | None], None] | None = None,
    replace_rows_matching: tuple[str, ...] = (),
    timeout: float = WRITE_LOCK_TIMEOUT,
) -> WriteResult:
    """Write JSON-line rows into `ref` in one transaction: all of them or, on any error, nothing.

    `check(rows_before)` runs first inside the transaction (rows_before None = no table) and may raise to
    refuse the write. `replace` drops an existing table (schema included) first; otherwise the table is
    created or extended to hold `fields`. `replace_rows_matching` names key columns: existing rows with
    the same key as a new row are deleted first (keep only the latest row per instance).

    Raises SchemaConflict when an existing column cannot hold the rows, WarehouseBusy when another
    process keeps the database locked.
    """
    staged = _stage_rows(data_dir, lines) if lines else None

    def transaction(con: duckdb.DuckDBPyConnection, catalog: str) -> WriteResult:
        parallel = len(lines) >= _PARALLEL_ROWS
        if parallel:
            con.execute(f"SET threads = {_THREADS}")
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                result = _write(con, catalog, ref, fields, staged, len(lines), replace, check, replace_rows_matching)
            except BaseException:
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return result
        finally:
            if parallel:
                con.execute("SET threads = 1")

    try:
        return _writer(database_path(data_dir, ref.project)).submit(transaction, timeout)  # type: ignore[return-value]
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)


def _dataset_exists(con: duckdb.DuckDBPyConnection, catalog: str, dataset: str) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_schemas() WHERE database_name = ? AND schema_name = ?",
                      [catalog, dataset]).fetchone()
    return row is not None and int(row[0]) > 0


def dataset_not_found_message(project: str, dataset: str) -> str:
    return f"Not found: Dataset {project}:{dataset}"


def create_dataset(data_dir: str | os.PathLike[str], project: str, dataset: str, *, exists_ok: bool = True,
                   timeout: float = WRITE_LOCK_TIMEOUT) -> bool:
    """Create BigQuery dataset `project.dataset` (what `bq mk` or Terraform's google_bigquery_dataset do in the
    cloud); return whether it was created. FileExistsError when it exists and not `exists_ok`."""
    ref = TableRef(project, dataset, "")

    def create(con: duckdb.DuckDBPyConnection, catalog: str) -> bool:
        if _dataset_exists(con, catalog, dataset):
            if not exists_ok:
                raise FileExistsError(f"Already Exists: Dataset {project}:{dataset}")
            return False
        con.execute(f"CREATE SCHEMA {_schema_sql(catalog, ref)}")
        return True

    return bool(_writer(database_path(data_dir, project)).submit(create, timeout))


# Datasets this process has seen exist: opening a file to look costs ~50 ms, an export's check needs it once.
# Nothing here deletes datasets; one dropped by hand is still caught by the write (DatasetNotFound).
_seen_datasets: set[tuple[str, str]] = set()


def dataset_exists(data_dir: str | os.PathLike[str], project: str, dataset: str,
                   timeout: float = READ_LOCK_TIMEOUT) -> bool:
    """Whether BigQuery dataset `project.dataset` exists (read-only; no file is created)."""
    path = database_path(data_dir, project)
    key = (str(path.resolve()), dataset)
    if key in _seen_datasets:
        return True
    if not path.exists():
        return False
    # Read-only, like any reader: it neither waits for nor blocks the queries of other processes.
    con = _with_retry(lambda: duckdb.connect(str(path), read_only=True), timeout, f"warehouse database {path}")
    try:
        catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        exists = _dataset_exists(con, catalog, dataset)
    finally:
        con.close()
    if exists:
        _seen_datasets.add(key)
    return exists


def _write(con: duckdb.DuckDBPyConnection, catalog: str, ref: TableRef, fields: list[Field], staged: Path | None,
           count: int, replace: bool, check: Callable[[int | None], None] | None, keys: tuple[str, ...]) -> WriteResult:
    existing = _existing_columns(con, catalog, ref)
    if existing is None and not _dataset_exists(con, catalog, ref.dataset):
        # Only then can the dataset be missing (a statement less on every other write).
        raise DatasetNotFound(dataset_not_found_message(ref.project, ref.dataset))
    rows_before = None
    if existing is not None:
        rows_before = con.execute(f"SELECT count(*) FROM {_table_sql(catalog, ref)}").fetchall()[0][0]  # noqa: S608
    if check is not None:
        check(rows_before)
    result = WriteResult(rows_before, count)
    if existing is not None and replace:
        con.execute(f"DROP TABLE {_table_sql(catalog, ref)}")
        existing, result.replaced = None, True
    if existing is None:
        columns = ", ".join(f"{quote_identifier(f.name)} {duckdb_type(f)}" for f in fields)
        con.execute(f"CREATE TABLE {_table_sql(catalog, ref)} ({columns})")
    else:
        _extend(con, catalog, ref, existing, fields, result)
    if staged is None:
        return result
    # Read the columns again only when this write created or changed them (most writes change nothing).
    changed = existing is None or result.added_columns or result.widened_columns
    table_columns = (_existing_columns(con, catalog, ref) if changed else existing) or {}
    source = _read_json_sql(staged, {name: str(dtype) for name, dtype in table_columns.items()})
    if keys:
        match = " AND ".join(f"n.{quote_identifier(k)} = t.{quote_identifier(k)}" for k in keys)
        key_source = _read_json_sql(staged, {k: "VARCHAR" for k in keys})
        con.execute(f"DELETE FROM {_table_sql(catalog, ref)} AS t WHERE EXISTS"  # noqa: S608 - quoted identifiers
                    f" (SELECT 1 FROM {key_source} AS n WHERE {match})")
    con.execute(f"INSERT INTO {_table_sql(catalog, ref)} BY NAME SELECT * FROM {source}")  # noqa: S608
    return result


__all__ = ["DatasetNotFound", "SchemaConflict", "TableRef", "WarehouseBusy", "WriteResult", "connect_read_only",
           "create_dataset", "database_path", "dataset_exists", "duckdb_type", "field_from_duckdb",
           "project_databases", "write_rows"]
