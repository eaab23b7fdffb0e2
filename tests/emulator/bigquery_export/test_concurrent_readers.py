"""dicomStores.export to BigQuery while other processes read the warehouse.

Readers query during exports; an export waits while another process holds the database read-only.
Through google-api-python-client against the running emulator; filter files live in fake-gcs-server; tables are
DuckDB files under the emulator's data directory (catalog = project, schema = dataset), read back with DuckDB.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT

from .helpers import REPO, export, new_table, rows, uri

pytestmark = pytest.mark.integration


# A second process: queries the table with run_query and opens the file with plain DuckDB (retrying, as
# any reader must, while the emulator is inside a write) until the table has the expected row count.
_READER = """
import sys, time, duckdb
repo, data_dir, table, path, expected = sys.argv[1:]
sys.path.insert(0, repo)
from local_bigquery.query import run_query
counts, deadline = [], time.monotonic() + 60
while time.monotonic() < deadline and (not counts or counts[-1] < int(expected)):
    counts.append(run_query(data_dir, f"SELECT COUNT(*) FROM `{table}`")[1][0][0])
    while True:
        try:
            duckdb.connect(path, read_only=True).close()
            break
        except duckdb.IOException as exc:
            assert "lock" in str(exc), exc
            time.sleep(0.01)
assert counts == sorted(counts), counts
print(len(counts), counts[-1])
"""


def test_other_processes_query_while_the_emulator_exports(emulator, healthcare, populated):
    store, instances = populated
    table = new_table(emulator)
    export(healthcare, store, {"tableUri": uri(table)})
    expected = len(instances) * 6
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(REPO), str(emulator.data_dir), uri(table)[5:],
                               str(emulator.data_dir / "warehouse" / f"{PROJECT}.duckdb"), str(expected)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(5):
            assert "error" not in export(healthcare, store, {"tableUri": uri(table),
                                                             "writeDisposition": "WRITE_APPEND"})
        out, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    queries, last = map(int, out.split())
    assert last == expected and queries >= 1


def test_export_waits_while_another_process_holds_the_database_read_only(emulator, healthcare, populated):
    store, instances = populated
    table = new_table(emulator)
    export(healthcare, store, {"tableUri": uri(table)})
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True);"
                               " print('open', flush=True); time.sleep(1.0); c.close()",
         str(emulator.data_dir / "warehouse" / f"{PROJECT}.duckdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        started = time.monotonic()
        operation = export(healthcare, store, {"tableUri": uri(table), "writeDisposition": "WRITE_APPEND"})
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert "error" not in operation, operation
    assert waited > 0.3  # it had to wait for the reader to let go
    assert len(rows(emulator, table)) == 2 * len(instances)
