"""The seed documents' BigQuery queries, run unchanged (apart from the table name) on exported metadata.

Data goes in through STOW-RS and dicomStores.export (google-api-python-client) and is read back with
local_bigquery.query.run_query, which translates BigQuery SQL to DuckDB with sqlglot.
"""

from __future__ import annotations

import uuid

import pytest

from dicom_samples import synthetic_instance, synthetic_studies
from local_bigquery.query import QueryError, run_query, translate
from local_bigquery.warehouse import create_dataset
from tests.conftest import LOCATION, PROJECT, StoreRef
from tests.emulator.bigquery_export.helpers import export, stow

pytestmark = pytest.mark.integration

# Italian seed, "Ricerca tra i metadati" and "Esecuzione di query per gli studi più recenti", verbatim.
SEED_PATIENT_QUERY = """#standardSQL
SELECT CONCAT('/dicomWeb/studies/', StudyInstanceUID, '/series/', SeriesInstanceUID, '/instances/', SOPInstanceUID) as DICOMwebPath
FROM `chc-nih-chest-xray.nih_chest_xray.nih_chest_xray`
WHERE PatientID = '19045';
"""  # noqa: E501 - verbatim
SEED_LATEST_STUDIES_QUERY = """#standardSQL
SELECT
MIN(CONCAT(StudyDate, ' ', StudyTime)) as StudyDateTime, MIN(PatientID) as PatientID, StudyInstanceUID, COUNT(*) as InstanceCount
FROM
`bigquery-public-data.idc_v5.dicom_metadata` AS dicom
GROUP BY StudyInstanceUID
ORDER BY StudyDateTime DESC
LIMIT 10;
"""  # noqa: E501 - verbatim
# Both seeds, "creating a filter file using BigQuery" (legacy SQL table reference in the Italian one).
SEED_FILTER_QUERY = ("SELECT CONCAT ('/studies/', StudyInstanceUID, '/series/', SeriesInstanceUID, '/instances/',"
                     " SOPInstanceUID) FROM [PROJECT_ID:BIGQUERY_DATASET.BIGQUERY_TABLE]")


@pytest.fixture(scope="module")
def exported(emulator, healthcare):
    """12 synthetic studies (one a month of 2024) plus patient 19045's study, exported to one table."""
    store = StoreRef(PROJECT, LOCATION, f"ds-{uuid.uuid4().hex[:10]}", "query-source")
    datasets = healthcare.projects().locations().datasets()
    datasets.create(parent=f"projects/{PROJECT}/locations/{LOCATION}", datasetId=store.dataset, body={}).execute()
    datasets.dicomStores().create(parent=store.dataset_name, dicomStoreId=store.store, body={}).execute()
    instances = list(synthetic_studies(studies=12, series_per_study=1, instances_per_series=2))
    study = "1.2.826.0.1.3680043.10.1001"
    instances += [synthetic_instance(study, f"{study}.{series}", f"{study}.{series}.{n}", patient_id="19045",
                                     study_date="20230704", instance_number=n, seed=n)
                  for series in (1, 2) for n in (1, 2, 3)]
    stow(emulator, store, [i.data for i in instances])
    table = (PROJECT, f"bq_{uuid.uuid4().hex[:10]}", "dicom_metadata")
    create_dataset(emulator.data_dir, *table[:2])
    assert "error" not in export(healthcare, store, {"tableUri": "bq://{}.{}.{}".format(*table)})
    return table, instances


def test_seed_query_dicomweb_paths_of_a_patient(emulator, exported):
    table, instances = exported
    sql = SEED_PATIENT_QUERY.replace("chc-nih-chest-xray.nih_chest_xray.nih_chest_xray", "{}.{}.{}".format(*table))

    columns, rows = run_query(emulator.data_dir, sql)

    assert columns == ["DICOMwebPath"]
    assert sorted(path for (path,) in rows) == sorted(
        f"/dicomWeb/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}"
        for i in instances if i.study_uid.startswith("1.2.826.0.1.3680043.10.1001"))
    assert len(rows) == 6


def test_seed_query_latest_studies_with_instance_counts(emulator, exported):
    table, instances = exported
    sql = SEED_LATEST_STUDIES_QUERY.replace("bigquery-public-data.idc_v5.dicom_metadata", "{}.{}.{}".format(*table))

    columns, rows = run_query(emulator.data_dir, sql)

    assert columns == ["StudyDateTime", "PatientID", "StudyInstanceUID", "InstanceCount"]
    synthetic = [i for i in instances if not i.study_uid.startswith("1.2.826.0.1.3680043.10.1001")]
    expected = []
    for month in range(12, 2, -1):  # the ten latest: December back to March
        study_uid = synthetic[(month - 1) * 2].study_uid
        expected.append((f"2024-{month:02d}-15 10:15:00", f"SYNTH-{month - 1:04d}", study_uid, 2))
    assert rows == expected


def test_seed_filter_file_query_in_legacy_and_standard_form(emulator, exported):
    table, instances = exported
    legacy = SEED_FILTER_QUERY.replace("PROJECT_ID:BIGQUERY_DATASET.BIGQUERY_TABLE", "{}:{}.{}".format(*table))
    standard = SEED_FILTER_QUERY.replace("[PROJECT_ID:BIGQUERY_DATASET.BIGQUERY_TABLE]", "`{}.{}.{}`".format(*table))
    expected = sorted(f"/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}" for i in instances)

    for sql in (legacy, standard):
        columns, rows = run_query(emulator.data_dir, sql)
        assert columns == ["f0_"]  # BigQuery's name for an unnamed column
        assert sorted(line for (line,) in rows) == expected


def test_table_names_in_every_bigquery_spelling(emulator, exported):
    table, instances = exported
    project, dataset, name = table
    for reference in (f"`{project}.{dataset}.{name}`", f"`{project}`.{dataset}.{name}", f"{project}.{dataset}.{name}",
                      f"`{project}`.`{dataset}`.`{name}`"):
        _, rows = run_query(emulator.data_dir, f"SELECT COUNT(*) AS n FROM {reference}")
        assert rows == [(len(instances),)], reference
    _, rows = run_query(emulator.data_dir, f"SELECT COUNT(*) FROM {dataset}.{name}", default_project=project)
    assert rows == [(len(instances),)]


def test_repeated_records_and_structs_query_the_bigquery_way(emulator, exported):
    table, instances = exported
    ref = "`{}.{}.{}`".format(*table)

    _, dropped = run_query(emulator.data_dir, f"SELECT d.TagName, COUNT(*) FROM {ref}, UNNEST(DroppedTags) AS d"
                                              " GROUP BY d.TagName ORDER BY d.TagName")
    _, names = run_query(emulator.data_dir, f"SELECT DISTINCT PatientName.Alphabetic.GivenName, ImageType[OFFSET(2)],"
                                            f" ARRAY_LENGTH(PixelSpacing) FROM {ref} WHERE PatientID = '19045'")

    assert dropped == [("FileMetaInformationVersion", len(instances)), ("PixelData", len(instances))]
    assert names == [("Patient", "AXIAL", 2)]


@pytest.mark.parametrize("sql, message", [
    ("DELETE FROM `p.d.t` WHERE TRUE", "only queries"),
    ("SELECT 1; SELECT 2", "one SQL statement"),
    ("SELECT * FROM lonely", "needs a dataset"),
    ("SELECT * FROM `no-such-project.d.t`", "no-such-project"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
])
def test_the_warehouse_is_read_only_and_errors_say_why(emulator, exported, sql, message):
    with pytest.raises(QueryError, match=message):
        run_query(emulator.data_dir, sql)


def test_file_access_is_off_inside_queries(emulator, exported):
    table, instances = exported
    sql = ("SELECT COUNT(*) FROM `{}.{}.{}` WHERE EXISTS (SELECT 1 FROM `{}.{}.{}`)".format(*table, *table))
    assert run_query(emulator.data_dir, sql)[1] == [(len(instances),)]
    with pytest.raises(QueryError):
        run_query(emulator.data_dir, "SELECT * FROM (SELECT * FROM read_text('/etc/hostname')) AS x, `p.d.t`")


def test_translation_quotes_catalogs_and_keeps_bigquery_semantics():
    duck = translate("SELECT ImageType[OFFSET(0)], x FROM my-project.ds.t ORDER BY x", None)
    assert '"my-project"."ds"."t"' in duck and "ImageType[1] AS f0_" in duck


def test_translation_names_a_dataset_named_like_its_project_in_full():
    """`bench.bench.t` stays three parts (two, "bench"."t", would be ambiguous in DuckDB), in every spelling."""
    for sql, project in (("SELECT * FROM `bench.bench.t`", None), ("SELECT * FROM [bench:bench.t]", None),
                         ("SELECT * FROM `bench`.bench.t", None), ("SELECT * FROM bench.t", "bench")):
        assert 'FROM "bench"."bench"."t"' in translate(sql, None, project), sql
