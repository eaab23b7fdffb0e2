"""The emulator's Cloud Logging v2 surface (`entries:list`), through google-api-python-client's logging v2
client: operation logs as ImportDicomLogEntry / ExportDicomLogEntry entries, the filter subset, paging."""

from __future__ import annotations

import pytest
from googleapiclient.errors import HttpError

from dicom_pipeline.operation_logs import log_filter
from dicom_samples import synthetic_studies
from local_bigquery.warehouse import create_dataset
from tests.helpers import wait

pytestmark = pytest.mark.integration

IMPORT_TYPE = "type.googleapis.com/google.cloud.healthcare.logging.ImportDicomLogEntry"


@pytest.fixture(scope="module")
def logging_api(emulator):
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery

    return discovery.build("logging", "v2", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": emulator.url}, cache_discovery=False,
                           static_discovery=True).entries()


@pytest.fixture(scope="module")
def failed_import(healthcare, emulator, gcs_client):
    """An import of two good and three broken files: its operation, project and bucket."""
    import uuid

    bucket = gcs_client.create_bucket(f"logs-{uuid.uuid4().hex[:10]}")
    good = list(synthetic_studies(1, 1, 2))
    for index, instance in enumerate(good):
        bucket.blob(f"in/good-{index}.dcm").upload_from_string(instance.data)
    for index in range(3):
        bucket.blob(f"in/bad-{index}.dcm").upload_from_string(b"\0" * 128 + b"DICM" + b"\x02\x00")
    store = f"projects/log-project/locations/us/datasets/logs-{uuid.uuid4().hex[:6]}"
    datasets = healthcare.projects().locations().datasets()
    wait(healthcare, datasets.create(parent="projects/log-project/locations/us",
                                     datasetId=store.rsplit("/", 1)[1]).execute())
    datasets.dicomStores().create(parent=store, dicomStoreId="s", body={}).execute()
    operation = wait(healthcare, datasets.dicomStores().import_(
        name=f"{store}/dicomStores/s", body={"gcsSource": {"uri": f"gs://{bucket.name}/in/*.dcm"}}).execute())
    assert operation["error"]["code"] == 3
    return operation, bucket.name


def test_each_failed_file_is_an_import_log_entry_of_its_operation(logging_api, failed_import) -> None:
    operation, bucket = failed_import
    answer = logging_api.list(body={"resourceNames": ["projects/log-project"],
                                    "filter": log_filter(operation["name"], operation["metadata"]["createTime"])
                                    }).execute()

    entries = answer["entries"]
    assert sorted(e["jsonPayload"]["source"] for e in entries) == [f"gs://{bucket}/in/bad-{i}.dcm" for i in range(3)]
    entry = entries[0]
    assert entry["jsonPayload"]["@type"] == IMPORT_TYPE and entry["jsonPayload"]["error"]["code"] == 3
    assert entry["jsonPayload"]["error"]["message"]
    assert entry["operation"] == {"id": operation["name"].rsplit("/", 1)[1],
                                  "producer": "healthcare.googleapis.com/ImportDicom"}
    assert entry["resource"]["type"] == "healthcare_dicom_store"
    assert entry["resource"]["labels"]["dicom_store_id"] == "s"
    assert entry["severity"] == "ERROR" and entry["logName"].startswith("projects/log-project/logs/")


def test_filter_by_source_paging_order_and_log_views(logging_api, failed_import) -> None:
    operation, bucket = failed_import
    source = f"gs://{bucket}/in/bad-1.dcm"
    one = logging_api.list(body={"resourceNames": ["projects/log-project"],
                                 "filter": log_filter(operation["name"], source=source)}).execute()["entries"]
    assert [e["jsonPayload"]["source"] for e in one] == [source]

    view = "projects/log-project/locations/global/buckets/_Default/views/healthcare"
    seen, token = [], None
    while True:
        page = logging_api.list(body={"resourceNames": [view], "pageSize": 2, "pageToken": token,
                                      "orderBy": "timestamp desc",
                                      "filter": f'operation.id="{operation["name"].rsplit("/", 1)[1]}"'}).execute()
        assert len(page.get("entries", [])) <= 2
        seen += page.get("entries", [])
        token = page.get("nextPageToken")
        if not token:
            break
    assert len(seen) == 3
    assert [e["timestamp"] for e in seen] == sorted((e["timestamp"] for e in seen), reverse=True)
    other = logging_api.list(body={"resourceNames": ["projects/another-project"],
                                   "filter": log_filter(operation["name"])}).execute()
    assert other.get("entries", []) == []
    negated = logging_api.list(body={"resourceNames": ["projects/log-project"],
                                     "filter": f'{log_filter(operation["name"])} -jsonPayload.source:"bad-1"'
                                     }).execute()["entries"]
    assert len(negated) == 2
    # An OR with a term that is not an operation id reads every log, not only operation 1's.
    either = logging_api.list(body={"resourceNames": ["projects/log-project"],
                                    "filter": 'operation.id="1" OR severity>=ERROR'}).execute()["entries"]
    assert len(either) == 3


def test_an_operation_level_failure_is_logged_too(emulator, healthcare, logging_api, new_store, new_bucket) -> None:
    store, bucket = new_store(), new_bucket()
    bucket.blob("x.dcm").upload_from_string(next(synthetic_studies(1, 1, 1)).data)
    stores = healthcare.projects().locations().datasets().dicomStores()
    wait(healthcare, stores.import_(name=store.name, body={"gcsSource": {"uri": f"gs://{bucket.name}/x.dcm"}})
         .execute())
    table = f"bq://{store.name.split('/')[1]}.logs_{bucket.name[-8:].replace('-', '_')}.t"
    create_dataset(emulator.data_dir, store.name.split("/")[1], f"logs_{bucket.name[-8:].replace('-', '_')}")
    export = {"bigqueryDestination": {"tableUri": table, "writeDisposition": "WRITE_EMPTY"}}
    assert "error" not in wait(healthcare, stores.export(name=store.name, body=export).execute())

    refused = wait(healthcare, stores.export(name=store.name, body=export).execute())

    (entry,) = logging_api.list(body={"resourceNames": [f"projects/{store.name.split('/')[1]}"],
                                      "filter": log_filter(refused["name"])}).execute()["entries"]
    assert entry["jsonPayload"]["error"] == {"code": refused["error"]["code"], "message": refused["error"]["message"]}
    assert entry["jsonPayload"]["@type"].endswith("ExportDicomLogEntry")


@pytest.mark.parametrize("body, message", [
    ({"filter": 'severity>=ERROR'}, "resourceNames is required"),
    ({"resourceNames": ["folders/1"]}, "invalid resource name"),
    ({"resourceNames": ["projects/p"], "filter": 'severity>=ERROR AND "free text"'}, "expected a field name"),
    ({"resourceNames": ["projects/p"], "filter": '(operation.id="1"'}, "missing ')'"),
    ({"resourceNames": ["projects/p"], "orderBy": "severity"}, "invalid orderBy"),
])
def test_bad_requests_are_400_naming_the_problem(logging_api, body, message) -> None:
    with pytest.raises(HttpError) as raised:
        logging_api.list(body=body).execute()
    assert raised.value.status_code == 400 and message in str(raised.value)
