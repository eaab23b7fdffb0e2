"""The warehouse's queued writers: many threads writing one database file at once (as export operations and
streaming do in a burst) each get exactly their own rows, in their own transaction, and one bad write fails
alone. Real DuckDB files in a temporary directory."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from local_bigquery.schema import INTEGER, STRING, Field, SchemaConflict
from local_bigquery.warehouse import TableRef, connect_read_only, create_dataset, write_rows

REF = TableRef("p", "ds", "t")
FIELDS = [Field("SOPInstanceUID", STRING), Field("Rows", INTEGER)]


@pytest.fixture(autouse=True)
def dataset(tmp_path):
    """REF's dataset: writes create tables, never datasets."""
    create_dataset(tmp_path, REF.project, REF.dataset)


def row(n: int) -> str:
    return json.dumps({"SOPInstanceUID": f"1.2.{n}", "Rows": n})


def table_rows(data_dir) -> list[tuple[str, int]]:
    con = connect_read_only(data_dir)
    try:
        return con.execute("SELECT SOPInstanceUID, Rows FROM p.ds.t ORDER BY Rows").fetchall()
    finally:
        con.close()


def test_concurrent_writes_each_land_exactly_once(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: write_rows(tmp_path, REF, FIELDS, [row(n)]), range(200)))
    assert [r.rows_written for r in results] == [1] * 200
    # Each write saw the table as the ones before it left it: every row count from 0 to 199 exactly once.
    assert sorted(r.rows_before or 0 for r in results) == list(range(200))
    assert table_rows(tmp_path) == [(f"1.2.{n}", n) for n in range(200)]


def test_a_failing_write_in_a_burst_fails_alone(tmp_path):
    write_rows(tmp_path, REF, FIELDS, [row(0)])
    start = threading.Barrier(9)
    bad_fields = [Field("SOPInstanceUID", STRING), Field("Rows", STRING)]  # Rows is INTEGER in the table

    def good(n: int) -> None:
        start.wait()
        write_rows(tmp_path, REF, FIELDS, [row(n)])

    def bad() -> None:
        start.wait()
        write_rows(tmp_path, REF, bad_fields, [json.dumps({"SOPInstanceUID": "9.9", "Rows": "x"})])

    with ThreadPoolExecutor(9) as pool:
        goods = [pool.submit(good, n) for n in range(1, 9)]
        failing = pool.submit(bad)
        for future in goods:
            future.result()
        with pytest.raises(SchemaConflict, match="Rows"):
            failing.result()
    assert table_rows(tmp_path) == [(f"1.2.{n}", n) for n in range(9)]


def test_the_file_is_readable_by_another_connection_between_bursts(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: write_rows(tmp_path, REF, FIELDS, [row(n)]), range(20)))
    assert len(table_rows(tmp_path)) == 20
    write_rows(tmp_path, REF, FIELDS, [row(20)])
    assert len(table_rows(tmp_path)) == 21


def test_large_and_small_writes_in_one_burst_land_whole(tmp_path):
    # A write of _PARALLEL_ROWS or more runs with DuckDB's thread pool, the small ones queued with it on
    # the same connection run in one thread: all of them land, each once.
    from local_bigquery.warehouse import _PARALLEL_ROWS

    big = [row(n) for n in range(_PARALLEL_ROWS + 200)]
    small = [[row(n)] for n in range(len(big), len(big) + 20)]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(write_rows, tmp_path, REF, FIELDS, lines) for lines in [*small[:10], big, *small[10:]]]
        assert sorted(f.result().rows_written for f in futures) == [1] * 20 + [len(big)]
    assert table_rows(tmp_path) == [(f"1.2.{n}", n) for n in range(len(big) + 20)]


def test_a_missing_table_is_created_and_extended_in_later_writes(tmp_path):
    write_rows(tmp_path, REF, FIELDS, [row(1)])
    wider = [*FIELDS, Field("Extra", STRING)]
    result = write_rows(tmp_path, REF, wider, [json.dumps({"SOPInstanceUID": "1.2.2", "Rows": 2, "Extra": "x"})])
    assert (result.rows_before, result.added_columns) == (1, ["Extra"])
    con = connect_read_only(tmp_path)
    try:
        assert con.execute("SELECT Rows, Extra FROM p.ds.t ORDER BY Rows").fetchall() == [(1, None), (2, "x")]
    finally:
        con.close()
