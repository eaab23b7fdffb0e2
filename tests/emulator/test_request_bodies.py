"""Request bodies as Google's own documentation sends them: proto3 original field names and single-quoted JSON.

The curl commands are the seed documents' (Google's DICOM import/export how-to), run verbatim by bash: only
the placeholders are filled in and https://healthcare.googleapis.com becomes the emulator's URL. Their
`$(gcloud auth … print-access-token)` runs too, in an empty gcloud config (no token: the emulator checks none).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from dicom_samples import synthetic_studies
from tests.helpers import metrics, wait

pytestmark = pytest.mark.integration

# The Indonesian seed, "Menentukan class penyimpanan untuk mengimpor objek DICOM": request.json, then curl.
SEED_IMPORT_WITH_STORAGE_CLASS = """\
cat > request.json << 'EOF'
{
  "gcsSource": {
    "uri": "gs://BUCKET/PATH/TO/FILE.dcm"
  },
  "blob_storage_settings": {
    "blob_storage_class": "STORAGE_CLASS"
  }
}
EOF
curl -X POST \\
    -H "Authorization: Bearer $(gcloud auth print-access-token)" \\
    -H "Content-Type: application/json" \\
    -d @request.json \\
    "https://healthcare.googleapis.com/v1/projects/PROJECT_ID/locations/LOCATION/datasets/DATASET_ID/dicomStores/DICOM_STORE_ID:import"
"""

# The Indonesian seed, "Mengekspor instance DICOM" (REST, curl).
SEED_EXPORT_SINGLE_QUOTED = """\
curl -X POST \\
    -H "Authorization: Bearer $(gcloud auth application-default print-access-token)" \\
    -H "Content-Type: application/json; charset=utf-8" \\
    --data "{
      'gcsDestination': {
        'uriPrefix': 'gs://BUCKET/DIRECTORY'
      }
    }" "https://healthcare.googleapis.com/v1/projects/PROJECT_ID/locations/LOCATION/datasets/DATASET_ID/dicomStores/DICOM_STORE_ID:export"
"""

# The Indonesian seed, "Meneruskan file filter" (REST, curl).
SEED_EXPORT_WITH_FILTER_SINGLE_QUOTED = """\
curl -X POST \\
    -H "Authorization: Bearer $(gcloud auth application-default print-access-token)" \\
    -H "Content-Type: application/json; charset=utf-8" \\
    --data "{
      'gcsDestination': {
        'uriPrefix': 'gs://BUCKET/DIRECTORY'
      },
      'filterConfig': {
        'resourcePathsGcsUri': 'gs://BUCKET/DIRECTORY/FILTER_FILE'
      }
    }" "https://healthcare.googleapis.com/v1/projects/PROJECT_ID/locations/REGION/datasets/DATASET_ID/dicomStores/DICOM_STORE_ID:export"
"""


def run_seed(command: str, emulator, tmp_path: Path, **values: str) -> dict:
    """Fill the placeholders, point the URL at the emulator, run with bash; return curl's JSON answer."""
    for placeholder, value in sorted(values.items(), key=lambda item: -len(item[0])):
        command = command.replace(placeholder, value)
    command = command.replace("https://healthcare.googleapis.com", emulator.url)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def store_values(store) -> dict[str, str]:
    return {"PROJECT_ID": store.project, "LOCATION": store.location, "REGION": store.location,
            "DATASET_ID": store.dataset, "DICOM_STORE_ID": store.store}


def get_operation(healthcare, answer: dict) -> dict:
    assert "name" in answer, answer
    return wait(healthcare, answer)


def test_seed_import_with_snake_case_storage_class_runs_verbatim(emulator, healthcare, new_store, new_bucket,
                                                                  tmp_path):
    store, bucket = new_store(), new_bucket()
    instance = next(synthetic_studies(1, 1, 1))
    bucket.blob("dicom/one.dcm").upload_from_string(instance.data)
    answer = run_seed(SEED_IMPORT_WITH_STORAGE_CLASS, emulator, tmp_path, **store_values(store),
                      BUCKET=bucket.name, **{"PATH/TO/FILE": "dicom/one"}, STORAGE_CLASS="COLDLINE")
    operation = get_operation(healthcare, answer)
    assert "error" not in operation, operation
    assert metrics(healthcare, store)["instanceCount"] == "1"
    info = healthcare.projects().locations().datasets().dicomStores().dicomWeb().studies().series().instances() \
        .getStorageInfo(resource=f"{store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
                                 f"/instances/{instance.sop_uid}").execute()
    assert info["blobStorageInfo"]["storageClass"] == "COLDLINE"


def _stored(emulator, store, count: int) -> list:
    instances = list(synthetic_studies(1, 1, count))
    for instance in instances:
        answer = requests.post(f"{emulator.url}/v1/{store.name}/dicomWeb/studies", data=instance.data, timeout=30,
                               headers={"Content-Type": "application/dicom"})
        assert answer.status_code == 200, answer.text
    return instances


def test_seed_single_quoted_export_runs_verbatim(emulator, healthcare, gcs_client, new_store, new_bucket, tmp_path):
    store, bucket = new_store(), new_bucket()
    instances = _stored(emulator, store, 2)
    answer = run_seed(SEED_EXPORT_SINGLE_QUOTED, emulator, tmp_path, **store_values(store), BUCKET=bucket.name,
                      DIRECTORY="out")
    operation = get_operation(healthcare, answer)
    assert "error" not in operation, operation
    names = sorted(b.name for b in gcs_client.list_blobs(bucket.name, prefix="out/"))
    assert names == sorted(f"out/{i.study_uid}/{i.series_uid}/{i.sop_uid}.dcm" for i in instances)


def test_seed_single_quoted_export_with_filter_runs_verbatim(emulator, healthcare, gcs_client, new_store,
                                                             new_bucket, tmp_path):
    store, bucket = new_store(), new_bucket()
    first, _second = _stored(emulator, store, 2)
    bucket.blob("filters/one.txt").upload_from_string(
        f"/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}\n")
    answer = run_seed(SEED_EXPORT_WITH_FILTER_SINGLE_QUOTED, emulator, tmp_path, **store_values(store),
                      BUCKET=bucket.name, DIRECTORY="filters", FILTER_FILE="one.txt")
    operation = get_operation(healthcare, answer)
    assert "error" not in operation, operation
    names = [b.name for b in gcs_client.list_blobs(bucket.name, prefix="filters/")]
    assert sorted(names) == sorted(["filters/one.txt",
                                    f"filters/{first.study_uid}/{first.series_uid}/{first.sop_uid}.dcm"])


def post(emulator, path: str, body: str | bytes, method: str = "POST") -> requests.Response:
    return requests.request(method, f"{emulator.url}/v1/{path}", data=body, timeout=10,
                            headers={"Content-Type": "application/json"})


def test_original_field_names_are_accepted_in_every_message(emulator, healthcare, new_store):
    """dicomStores.create and patch, datasets.create: snake_case names, nested ones too, read as camelCase."""
    store = new_store()
    created = post(emulator, f"{store.dataset_name}/dicomStores?dicomStoreId=snake",
                   '{"notification_config": {"pubsub_topic": "projects/p/topics/t", "send_for_bulk_import": true},'
                   ' "stream_configs": [{"bigquery_destination": {"table_uri": "bq://p.d.t", "include_source_store":'
                   ' true}}]}')
    assert created.status_code == 200, created.text
    assert created.json()["notificationConfig"] == {"pubsubTopic": "projects/p/topics/t", "sendForBulkImport": True}
    assert created.json()["streamConfigs"] == [{"bigqueryDestination": {"tableUri": "bq://p.d.t",
                                                                         "includeSourceStore": True}}]
    patched = post(emulator, f"{store.dataset_name}/dicomStores/snake?updateMask=labels",
                   "{'labels': {'team_name': 'imaging'}}", method="PATCH")
    assert patched.status_code == 200, patched.text
    assert patched.json()["labels"] == {"team_name": "imaging"}  # map keys are data: left as written
    dataset = post(emulator, f"projects/{store.project}/locations/{store.location}/datasets?datasetId=snake-ds",
                   '{"time_zone": "Europe/Rome"}')
    assert dataset.status_code == 200, dataset.text
    assert dataset.json()["response"]["timeZone"] == "Europe/Rome"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"gcs_source": {"uri": "gs://b/x.dcm"}, "gcsSource": {"uri": "gs://b/y.dcm"}}', ["gcs_source", "twice"]),
        ('{"gcs_source": {"uri_pattern": "gs://b/x.dcm"}}', ['"uri_pattern"', "gcs_source"]),
        ("{'gcsSource': {'uri': 'gs://b/x.dcm'}", ["Invalid JSON payload"]),  # single quotes, unbalanced
        ("{gcsSource: ", ["Invalid JSON payload"]),
    ],
)
def test_bad_lenient_bodies_still_name_the_problem(emulator, new_store, body, words):
    answer = post(emulator, f"{new_store().name}:import", body)
    assert answer.status_code == 400, answer.text
    for word in words:
        assert word in answer.json()["error"]["message"], answer.json()
