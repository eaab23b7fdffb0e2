"""dicomStores.export to BigQuery restricted by a filter file (filterConfig).

Study, series and instance lines, line endings, a malformed line, a filter file built from SQL.
Through google-api-python-client against the running emulator; filter files live in fake-gcs-server; tables are
DuckDB files under the emulator's data directory (catalog = project, schema = dataset), read back with DuckDB.
"""

from __future__ import annotations

import pytest

from .helpers import export, new_table, rows, table_exists, uri

pytestmark = pytest.mark.integration


def test_filter_file_with_study_series_and_instance_lines_crlf_and_blank_lines(
        emulator, healthcare, populated, new_bucket):
    store, instances = populated
    a, b = instances[0].study_uid, instances[4].study_uid
    b_series = sorted({i.series_uid for i in instances if i.study_uid == b})
    lone = next(i for i in instances if i.series_uid == b_series[1])
    lines = [f"/studies/{a}", "", f"/studies/{b}/series/{b_series[0]}",
             f"/studies/{b}/series/{b_series[1]}/instances/{lone.sop_uid}", "", ""]
    bucket = new_bucket()
    bucket.blob("filters/some.txt").upload_from_string("\r\n".join(lines))
    table = new_table(emulator)

    operation = export(healthcare, store, {"tableUri": uri(table)}, f"gs://{bucket.name}/filters/some.txt")

    expected = sorted(i.sop_uid for i in instances
                      if i.study_uid == a or i.series_uid == b_series[0] or i.sop_uid == lone.sop_uid)
    assert operation["metadata"]["counter"] == {"success": str(len(expected))}
    assert [r["SOPInstanceUID"] for r in rows(emulator, table)] == expected


def test_malformed_filter_line_fails_the_operation_naming_the_line(emulator, healthcare, populated, new_bucket):
    store, instances = populated
    bucket = new_bucket()
    bucket.blob("bad.txt").upload_from_string(f"/studies/{instances[0].study_uid}\n\n/studies/1.2/series\n")
    table = new_table(emulator)

    operation = export(healthcare, store, {"tableUri": uri(table)}, f"gs://{bucket.name}/bad.txt")

    assert operation["error"]["code"] == 3
    assert "line 3" in operation["error"]["message"]
    assert not table_exists(emulator, table)
    missing = export(healthcare, store, {"tableUri": uri(table)}, f"gs://{bucket.name}/absent.txt")
    assert missing["error"]["code"] == 5


def test_filter_file_built_with_the_seed_query_round_trips(emulator, healthcare, populated, new_bucket):
    """Seed (Italian, filter section): export, build a filter file with the seed's SQL, export again with it."""
    from local_bigquery.query import run_query

    store, _ = populated
    everything, subset = new_table(emulator), new_table(emulator)
    export(healthcare, store, {"tableUri": uri(everything)})
    seed_sql = ("SELECT CONCAT ('/studies/', StudyInstanceUID, '/series/', SeriesInstanceUID, '/instances/',"
                " SOPInstanceUID) FROM [PROJECT_ID:BIGQUERY_DATASET.BIGQUERY_TABLE]")
    sql = seed_sql.replace("PROJECT_ID:BIGQUERY_DATASET.BIGQUERY_TABLE", "{}:{}.{}".format(*everything))
    sql += f" WHERE PatientID = '{'SYNTH-0001'}'"
    columns, result = run_query(emulator.data_dir, sql)
    assert columns == ["f0_"]
    bucket = new_bucket()
    bucket.blob("from-query.txt").upload_from_string("\n".join(path for (path,) in result) + "\n")

    operation = export(healthcare, store, {"tableUri": uri(subset)}, f"gs://{bucket.name}/from-query.txt")

    assert operation["metadata"]["counter"] == {"success": "4"}
    assert {r["PatientID"] for r in rows(emulator, subset)} == {"SYNTH-0001"}
