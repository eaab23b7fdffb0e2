"""The main job for now: run the Healthcare emulator offline and import DICOM from Cloud Storage into it.

Starts fake-gcs-server and the emulator on free 127.0.0.1 ports, uploads synthetic studies plus files from
pydicom's vendor corpus (some of them broken), imports them with one `dicomStores.import` through
google-api-python-client, shows progress from the operation's counters, prints each failed file's reason
from the operation log, and stops everything it started.

    python -m local_stack.import_demo [--studies 5] [--keep-running]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import requests
from dicomweb_client.api import DICOMwebClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from healthcare_emulator import EmulatorServer
from local_stack.fake_gcs import FakeGcsServer
from local_stack.healthcare_api import create_dicom_store, healthcare_service
from local_stack.sample_data import synthetic_studies, vendor_corpus

PROJECT, LOCATION, DATASET, STORE, BUCKET = "demo-project", "us-central1", "demo-dataset", "demo-store", "dicom-landing"
CORPUS_SAMPLE = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "rtplan.dcm",
                 "no_meta.dcm", "MR_truncated.dcm", "meta_missing_tsyntax.dcm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=5, help="synthetic studies to generate (default 5)")
    parser.add_argument("--keep-running", action="store_true", help="keep the emulators up until Ctrl-C")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="import-demo-") as data_dir, FakeGcsServer() as gcs, \
            EmulatorServer(data_dir=data_dir, storage_emulator_host=gcs.url) as emulator:
        print(f"fake-gcs-server     {gcs.url}")
        print(f"Healthcare emulator {emulator.url}  (data dir {data_dir})\n")

        bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": gcs.url}).create_bucket(BUCKET)
        synthetic = list(synthetic_studies(args.studies, series_per_study=2, instances_per_series=5,
                                           sizes=(64, 128, 256)))
        for index, instance in enumerate(synthetic):
            bucket.blob(f"incoming/synthetic/{index:04d}.dcm").upload_from_string(instance.data)
        corpus = [p for p in vendor_corpus() if p.name in CORPUS_SAMPLE]
        for path in corpus:
            bucket.blob(f"incoming/vendor/{path.name}").upload_from_filename(str(path))
        print(f"uploaded {len(synthetic)} synthetic instances and {len(corpus)} vendor files to gs://{BUCKET}/incoming/")

        healthcare = healthcare_service(emulator.url)
        datasets = healthcare.projects().locations().datasets()
        store_name = create_dicom_store(healthcare, PROJECT, LOCATION, DATASET, STORE)

        uri = f"gs://{BUCKET}/incoming/**.dcm"
        operation = datasets.dicomStores().import_(
            name=store_name, body={"gcsSource": {"uri": uri}, "blobStorageSettings": {"blobStorageClass": "NEARLINE"}}
        ).execute()
        print(f"\nimport {uri}\n  operation {operation['name']}")
        interactive = sys.stdout.isatty()
        while "done" not in operation:
            counter = operation["metadata"].get("counter", {})
            if interactive:
                print(f"\r  running: {counter.get('success', '0')} stored, {counter.get('failure', '0')} failed,"
                      f" {counter.get('pending', '0')} pending", end="", flush=True)
            time.sleep(0.1)
            operation = datasets.operations().get(name=operation["name"]).execute()
        counter = operation["metadata"].get("counter", {})
        print(f"{chr(13) if interactive else ''}  done: {counter.get('success', '0')} stored,"
              f" {counter.get('failure', '0')} failed" + " " * 20)
        if "error" in operation:
            print(f"  operation error {operation['error']['code']}: {operation['error']['message']}")
            log = requests.get(operation["metadata"]["logsUrl"], timeout=10).json()["entries"]
            for entry in log:
                print(f"    {entry['resource']}: {entry['message']}")

        metrics = datasets.dicomStores().getDICOMStoreMetrics(name=store_name).execute()
        print(f"\nstore {store_name}\n  {metrics.get('studyCount', '0')} studies, {metrics.get('seriesCount', '0')}"
              f" series, {metrics.get('instanceCount', '0')} instances,"
              f" {int(metrics.get('blobStorageSizeBytes', '0')) / 1e6:.1f} MB")
        dicomweb = DICOMwebClient(url=f"{emulator.url}/v1/{store_name}/dicomWeb")
        studies = dicomweb.search_for_studies(fields=["ModalitiesInStudy", "NumberOfStudyRelatedInstances"])
        print(f"\nQIDO-RS {emulator.url}/v1/{store_name}/dicomWeb/studies -> {len(studies)} studies")
        for study in studies[:5]:
            print(f"  {study['0020000D']['Value'][0]}  modalities {','.join(study['00080061']['Value'])}"
                  f"  instances {study['00201208']['Value'][0]}")
        expected_failures = {"no_meta.dcm", "MR_truncated.dcm", "meta_missing_tsyntax.dcm"}
        ok = int(counter.get("success", "0")) == len(synthetic) + len(corpus) - len(expected_failures)
        if args.keep_running:
            print(f"\nemulators keep running; try:\n  curl {emulator.url}/v1/{store_name}:getDICOMStoreMetrics\n"
                  "Ctrl-C stops them.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    print("\nstopped fake-gcs-server and the emulator")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
