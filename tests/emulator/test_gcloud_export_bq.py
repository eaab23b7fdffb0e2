"""`gcloud healthcare dicom-stores export bq` against the emulator (reference §8): every flag that maps to
bigqueryDestination, checked in the local warehouse with DuckDB."""

from __future__ import annotations

import json
import shutil

import pytest

from dicom_samples import synthetic_studies
from tests.emulator.bigquery_export.helpers import column_types, make_table, new_table, rows, stow, uri
from tests.helpers import wait

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gcloud,
    pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed"),
]


@pytest.fixture
def source(emulator, new_store):
    store = new_store()
    instances = list(synthetic_studies(studies=1, series_per_study=1, instances_per_series=3))
    stow(emulator, store, [i.data for i in instances])
    return store, instances


def export_bq(gcloud, store, table: tuple[str, str, str], *flags: str):
    return gcloud("dicom-stores", "export", "bq", store.store, f"--dataset={store.dataset}",
                  f"--location={store.location}", f"--bq-table={uri(table)}", *flags, project=store.project)


def export_bq_async(gcloud, healthcare, store, table, *flags: str) -> dict:
    result = export_bq(gcloud, store, table, "--async", "--format=json", *flags)
    assert result.returncode == 0, result.stderr
    return wait(healthcare, {"name": json.loads(result.stdout)["name"]})


def test_gcloud_export_bq_creates_the_table_then_refuses_to_overwrite_it(emulator, gcloud, source):
    store, instances = source
    table = new_table(emulator)

    created = export_bq(gcloud, store, table)
    again = export_bq(gcloud, store, table)

    assert created.returncode == 0, created.stderr
    assert f"name: {store.name}" in created.stdout  # gcloud GETs the store once the operation is done
    assert sorted(r["SOPInstanceUID"] for r in rows(emulator, table)) == sorted(i.sop_uid for i in instances)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert len(rows(emulator, table)) == len(instances)


def test_gcloud_overwrite_table_and_write_disposition_flags(emulator, gcloud, healthcare, source):
    store, instances = source
    n = len(instances)
    table = new_table(emulator)
    make_table(emulator, table, old_rows=2)  # an existing table with rows of its own ("Marker" column)

    refused = export_bq_async(gcloud, healthcare, store, table, "--write-disposition=write-empty")
    assert refused["error"]["code"] == 6 and len(rows(emulator, table)) == 2

    appended = export_bq_async(gcloud, healthcare, store, table, "--write-disposition=write-append")
    assert "error" not in appended and len(rows(emulator, table)) == 2 + n
    assert "Marker" in column_types(emulator, table)

    overwritten = export_bq_async(gcloud, healthcare, store, table, "--overwrite-table")  # force: true
    assert "error" not in overwritten and len(rows(emulator, table)) == n
    assert "Marker" not in column_types(emulator, table)

    appended = export_bq_async(gcloud, healthcare, store, table, "--write-disposition=write-append")
    assert len(rows(emulator, table)) == 2 * n

    # gcloud sends force and writeDisposition together here; writeDisposition wins (truncate)
    truncated = export_bq_async(gcloud, healthcare, store, table, "--write-disposition=write-truncate",
                                "--overwrite-table")
    assert "error" not in truncated and len(rows(emulator, table)) == n


def test_gcloud_beta_filter_config_exports_only_the_listed_instances(emulator, gcloud, source, new_bucket):
    store, instances = source
    table = new_table(emulator)
    bucket = new_bucket()
    chosen = instances[1]
    bucket.blob("filter.txt").upload_from_string(
        f"/studies/{chosen.study_uid}/series/{chosen.series_uid}/instances/{chosen.sop_uid}\n".encode())

    result = gcloud("dicom-stores", "export", "bq", store.store, f"--dataset={store.dataset}",
                    f"--location={store.location}", f"--bq-table={uri(table)}",
                    f"--filter-config-gcs-uri=gs://{bucket.name}/filter.txt", project=store.project, track="beta")

    assert result.returncode == 0, result.stderr
    assert [r["SOPInstanceUID"] for r in rows(emulator, table)] == [chosen.sop_uid]
