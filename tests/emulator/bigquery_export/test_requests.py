"""dicomStores.export to BigQuery: the request.

Synchronous validation (400), destinations in other projects, table URIs at the length limit, dataset names.
Through google-api-python-client against the running emulator; filter files live in fake-gcs-server; tables are
DuckDB files under the emulator's data directory (catalog = project, schema = dataset), read back with DuckDB.
"""

from __future__ import annotations

import uuid

import duckdb
import pytest
from googleapiclient.errors import HttpError

from local_bigquery.warehouse import create_dataset
from tests.conftest import PROJECT

from .helpers import export, rows, stow, uri

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("destination, message", [
    ({}, "tableUri is required"),
    ({"tableUri": "test-project.ds.t"}, "bq://PROJECT_ID.DATASET_ID.TABLE_ID"),
    ({"tableUri": "bq://test-project.ds"}, "bq://PROJECT_ID.DATASET_ID.TABLE_ID"),
    ({"tableUri": "bq://test-project.d-s.t"}, "not a valid BigQuery dataset ID"),
    ({"tableUri": "bq://Bad_Project!.ds.t"}, "not a valid BigQuery project ID"),
    ({"tableUri": "bq://test-project.ds." + "t" * 2000}, "the limit is 2000"),
    ({"tableUri": "bq://test-project.ds.t", "writeDisposition": "WRITE_SOMETIMES"}, "write_disposition"),
    ({"tableUri": "bq://test-project.ds.t", "force": "yes"}, "bigquery_destination.force"),
    ({"tableUri": "bq://test-project.ds.t", "includeSourceStore": 1}, "include_source_store"),
    ({"tableUri": "bq://test-project.ds.t", "schemaFlattened": {}, "schemaJson": {}}, "at most one"),
    ({"tableUri": "bq://test-project.ds.t", "changeDataCaptureConfig": {}}, "only supported with schemaJson"),
    ({"tableUri": "bq://test-project.ds.t", "schemaFlattened": {"x": 1}}, 'Unknown name "x"'),
])
def test_invalid_destination_is_a_400_before_any_operation(healthcare, populated, destination, message):
    store, _ = populated
    with pytest.raises(HttpError) as caught:
        healthcare.projects().locations().datasets().dicomStores().export(
            name=store.name, body={"bigqueryDestination": destination}).execute()
    assert caught.value.status_code == 400
    assert message in str(caught.value.error_details or caught.value)


def test_export_to_another_project_and_a_table_uri_of_exactly_2000_characters(emulator, healthcare, populated):
    store, instances = populated
    other = ("other-project", f"bq_{uuid.uuid4().hex[:10]}", "t")
    create_dataset(emulator.data_dir, *other[:2])
    assert export(healthcare, store, {"tableUri": uri(other)}).get("error") is None
    assert len(rows(emulator, other)) == len(instances)
    from local_bigquery.query import run_query

    scoped = "bq://example.com:scoped-project.ds.t"  # a domain-scoped project ID
    create_dataset(emulator.data_dir, "example.com:scoped-project", "ds")
    assert export(healthcare, store, {"tableUri": scoped}).get("error") is None
    assert run_query(emulator.data_dir, "SELECT COUNT(*) FROM `example.com:scoped-project.ds.t`")[1] == [
        (len(instances),)]
    dataset = f"bq_{uuid.uuid4().hex[:10]}".ljust(1000 - len(f"bq://{PROJECT}.."), "d")
    long_table = (PROJECT, dataset, "t" * 1000)  # BigQuery's table names stop at 1,024 characters
    create_dataset(emulator.data_dir, PROJECT, dataset)
    assert len(uri(long_table)) == 2000
    assert export(healthcare, store, {"tableUri": uri(long_table)}).get("error") is None
    assert len(rows(emulator, long_table)) == len(instances)


def test_every_write_to_a_dataset_named_like_its_project(emulator, healthcare, populated, new_store):
    """bq://P.P.T: the project's database file is DuckDB catalog P and the dataset schema P, so a table
    named "P"."T" would be ambiguous; exports (every disposition, schema changes, CDC) and streaming work."""
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery

    from local_bigquery.query import run_query

    store, instances = populated
    name = f"same{uuid.uuid4().hex[:10]}"
    create_dataset(emulator.data_dir, name, name)
    n = len(instances)

    def count(table: str) -> int:
        return run_query(emulator.data_dir, f"SELECT COUNT(*) FROM `{name}.{name}.{table}`")[1][0][0]

    for destination, expected in (({}, n),  # the table is missing: created
                                  ({"writeDisposition": "WRITE_APPEND"}, 2 * n),
                                  ({"writeDisposition": "WRITE_TRUNCATE"}, n),
                                  ({"force": True}, n)):
        operation = export(healthcare, store, {"tableUri": f"bq://{name}.{name}.t", **destination})
        assert "error" not in operation, (destination, operation)
        assert count("t") == expected, destination
    refused = export(healthcare, store, {"tableUri": f"bq://{name}.{name}.t", "writeDisposition": "WRITE_EMPTY"})
    assert refused["error"]["code"] == 6, refused  # ALREADY_EXISTS, as for any other dataset name
    assert count("t") == n

    # A table made by hand with fewer columns: WRITE_APPEND adds the missing ones and keeps its row.
    con = duckdb.connect(str(emulator.data_dir / "warehouse" / f"{name}.duckdb"))
    try:
        catalog = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f'CREATE TABLE "{catalog}"."{name}"."by_hand" (SOPInstanceUID VARCHAR, Marker VARCHAR)')
        con.execute(f"""INSERT INTO "{catalog}"."{name}"."by_hand" VALUES ('0.1', 'old')""")
    finally:
        con.close()
    operation = export(healthcare, store, {"tableUri": f"bq://{name}.{name}.by_hand",
                                           "writeDisposition": "WRITE_APPEND"})
    assert "error" not in operation, operation
    _, got = run_query(emulator.data_dir, f"SELECT Marker, COUNT(*), COUNT(PatientName) FROM `{name}.{name}.by_hand`"
                                          " GROUP BY Marker ORDER BY Marker NULLS LAST")
    assert got == [("old", 1, 0), (None, n, n)]

    # Change data capture (rows replaced by key), through v1beta1.
    beta = discovery.build("healthcare", "v1beta1", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": emulator.url}, cache_discovery=False)
    cdc = {"tableUri": f"bq://{name}.{name}.cdc", "schemaJson": {}, "changeDataCaptureConfig": {},
           "writeDisposition": "WRITE_APPEND"}
    for _ in range(2):
        operation = export(beta, store, cdc)
        assert "error" not in operation, operation
    assert count("cdc") == n

    # Streaming (streamConfigs): every stored instance is appended as it arrives.
    streamed = new_store(streamConfigs=[{"bigqueryDestination": {"tableUri": f"bq://{name}.{name}.stream"}}])
    stow(emulator, streamed, [i.data for i in instances[:2]])
    assert count("stream") == 2
