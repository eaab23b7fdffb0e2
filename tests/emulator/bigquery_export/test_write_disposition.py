"""dicomStores.export to BigQuery: `force` and `writeDisposition` against every table state (reference §4.4).

Through google-api-python-client against the running emulator; filter files live in fake-gcs-server; tables are
DuckDB files under the emulator's data directory (catalog = project, schema = dataset), read back with DuckDB.
"""

from __future__ import annotations

import pytest

from .helpers import column_types, export, make_table, new_table, rows, uri

pytestmark = pytest.mark.integration


MODES = {
    "force-unset": {},
    "force-false": {"force": False},
    "force-true": {"force": True},
    "WRITE_EMPTY": {"writeDisposition": "WRITE_EMPTY"},
    "WRITE_DISPOSITION_UNSPECIFIED": {"writeDisposition": "WRITE_DISPOSITION_UNSPECIFIED"},
    "WRITE_TRUNCATE": {"writeDisposition": "WRITE_TRUNCATE"},
    "WRITE_APPEND": {"writeDisposition": "WRITE_APPEND"},
    # writeDisposition set: force is ignored either way
    "WRITE_EMPTY+force": {"writeDisposition": "WRITE_EMPTY", "force": True},
    "WRITE_APPEND+force": {"writeDisposition": "WRITE_APPEND", "force": True},
    "WRITE_TRUNCATE+force-false": {"writeDisposition": "WRITE_TRUNCATE", "force": False},
}
# outcome per (table state, mode): create | error | replace (old rows and old schema gone) | write (kept, added to)
EXPECTED = {
    "missing": dict.fromkeys(MODES, "create"),
    "empty": {"force-unset": "error", "force-false": "error", "force-true": "replace", "WRITE_EMPTY": "write",
              "WRITE_DISPOSITION_UNSPECIFIED": "write", "WRITE_TRUNCATE": "replace", "WRITE_APPEND": "write",
              "WRITE_EMPTY+force": "write", "WRITE_APPEND+force": "write", "WRITE_TRUNCATE+force-false": "replace"},
    "has-rows": {"force-unset": "error", "force-false": "error", "force-true": "replace", "WRITE_EMPTY": "error",
                 "WRITE_DISPOSITION_UNSPECIFIED": "error", "WRITE_TRUNCATE": "replace", "WRITE_APPEND": "write",
                 "WRITE_EMPTY+force": "error", "WRITE_APPEND+force": "write", "WRITE_TRUNCATE+force-false": "replace"},
}


@pytest.mark.parametrize("state", list(EXPECTED))
@pytest.mark.parametrize("mode", list(MODES))
def test_force_and_write_disposition_table(emulator, healthcare, populated, state, mode):
    store, instances = populated
    table = new_table(emulator)
    old = {"missing": None, "empty": 0, "has-rows": 3}[state]
    if old is not None:
        make_table(emulator, table, old)

    operation = export(healthcare, store, {"tableUri": uri(table), **MODES[mode]})

    outcome = EXPECTED[state][mode]
    if outcome == "error":
        assert operation["error"]["code"] == 6, operation  # ALREADY_EXISTS
        assert "already exists" in operation["error"]["message"]
        assert "counter" not in operation["metadata"]  # nothing written, nothing pending
        # The table is exactly as it was: same rows, same columns.
        assert column_types(emulator, table) == {"SOPInstanceUID": "VARCHAR", "Marker": "VARCHAR"}
        assert len(rows(emulator, table)) == old
        return
    assert "error" not in operation, operation
    assert operation["metadata"]["counter"] == {"success": str(len(instances))}
    got = rows(emulator, table)
    new = sorted(r["SOPInstanceUID"] for r in got if r.get("Marker") is None)
    assert new == sorted(i.sop_uid for i in instances)
    columns = column_types(emulator, table)
    if outcome in ("create", "replace"):
        assert "Marker" not in columns and len(got) == len(instances)
    else:  # write: the existing table is kept, rows added, its schema extended
        assert columns["Marker"] == "VARCHAR"
        assert [r["Marker"] for r in got].count("old") == old
        assert columns["PatientName"].startswith("STRUCT(Alphabetic STRUCT(")
