"""dicomStores.import through google-api-python-client, reading objects from fake-gcs-server."""

from __future__ import annotations

import pytest
import requests

from dicom_samples import synthetic_instance, synthetic_studies, vendor_corpus
from tests.helpers import metrics, run_import

pytestmark = pytest.mark.integration


def test_import_stores_every_instance_and_reports_counters(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    instances = list(synthetic_studies(studies=3, series_per_study=2, instances_per_series=2))
    for index, instance in enumerate(instances):
        bucket.blob(f"incoming/{index:03d}.dcm").upload_from_string(instance.data)

    operation = run_import(healthcare, store, f"gs://{bucket.name}/incoming/*.dcm")

    assert operation["done"] is True
    assert "error" not in operation
    assert operation["response"]["@type"].endswith("ImportDicomDataResponse")
    assert operation["metadata"]["counter"] == {"success": str(len(instances))}
    assert operation["metadata"]["apiMethodName"].endswith("DicomService.ImportDicomData")
    assert operation["metadata"]["endTime"] >= operation["metadata"]["createTime"]
    assert metrics(healthcare, store)["instanceCount"] == str(len(instances))
    assert metrics(healthcare, store)["studyCount"] == "3"
    assert metrics(healthcare, store)["seriesCount"] == "6"


def _independent_uids(path) -> tuple[str, str, str] | None:
    """The UID triple of a readable Part-10 file according to plain pydicom, or None."""
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            return None
    try:
        if not ds.file_meta.TransferSyntaxUID:
            return None
        return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    except AttributeError:
        return None


def test_vendor_corpus_good_files_import_and_broken_ones_fail_with_a_reason(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    files = vendor_corpus()
    root = files[0].parent
    flat = {path: "__".join(path.relative_to(root).parts) if path.is_relative_to(root) else path.name
            for path in files}
    for path, object_name in flat.items():
        bucket.blob(f"corpus/{object_name}").upload_from_filename(str(path))

    operation = run_import(healthcare, store, f"gs://{bucket.name}/corpus/*")

    counter = operation["metadata"]["counter"]
    entries = requests.get(operation["metadata"]["logsUrl"], timeout=10).json()["entries"]
    failed = {entry["resource"].rsplit("/", 1)[1]: entry["message"] for entry in entries}
    assert int(counter["success"]) + int(counter["failure"]) == len(files)
    assert int(counter["failure"]) == len(failed)
    assert operation["error"]["code"] == 3
    # Broken and non-DICOM files fail alone, each with a reason that names the problem.
    assert "DICM" in failed["no_meta.dcm"]
    assert "truncated" in failed["MR_truncated.dcm"]
    assert "TransferSyntaxUID" in failed["meta_missing_tsyntax.dcm"]
    assert "DICM" in failed["README.txt"]
    assert "not a composite instance" in failed["dicomdirtests__DICOMDIR"]
    # Several corpus files are re-encodings of one instance (MR_small*, rtdose*): the first stored wins and
    # the others are checksum mismatches. Every distinct readable instance must be in the store.
    readable = {flat[path]: _independent_uids(path) for path in files}
    for name, reason in failed.items():
        assert reason, name
        if "checksum mismatch" in reason:
            assert readable[name] is not None
    expected = {uids for name, uids in readable.items()
                if uids and (name not in failed or "checksum mismatch" in failed[name])}
    assert metrics(healthcare, store)["instanceCount"] == str(len(expected))
    for good in ("CT_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "rtplan.dcm", "waveform_ecg.dcm"):
        assert good not in failed or "checksum mismatch" in failed[good]


def test_identical_duplicate_is_ignored_and_changed_bytes_are_a_checksum_mismatch(
    healthcare, new_store, new_bucket
):
    store, bucket = new_store(), new_bucket()
    original = synthetic_instance(seed=1)
    changed = synthetic_instance(original.study_uid, original.series_uid, original.sop_uid, seed=2)
    bucket.blob("a/original.dcm").upload_from_string(original.data)
    bucket.blob("b/same.dcm").upload_from_string(original.data)
    bucket.blob("c/changed.dcm").upload_from_string(changed.data)

    first = run_import(healthcare, store, f"gs://{bucket.name}/a/original.dcm")
    again = run_import(healthcare, store, f"gs://{bucket.name}/b/same.dcm")
    conflict = run_import(healthcare, store, f"gs://{bucket.name}/c/changed.dcm")

    assert first["metadata"]["counter"] == {"success": "1"}
    assert again["metadata"]["counter"] == {"success": "1"} and "error" not in again
    assert conflict["metadata"]["counter"] == {"failure": "1"}
    log = requests.get(conflict["metadata"]["logsUrl"], timeout=10).json()["entries"]
    assert "checksum mismatch" in log[0]["message"]
    assert metrics(healthcare, store)["instanceCount"] == "1"


def test_study_and_series_metrics(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    instances = list(synthetic_studies(studies=1, series_per_study=2, instances_per_series=3))
    for index, instance in enumerate(instances):
        bucket.blob(f"m/{index}.dcm").upload_from_string(instance.data)
    run_import(healthcare, store, f"gs://{bucket.name}/m/*")
    study = f"{store.name}/dicomWeb/studies/{instances[0].study_uid}"
    series = f"{study}/series/{instances[0].series_uid}"
    dicom_web = healthcare.projects().locations().datasets().dicomStores().dicomWeb()

    study_metrics = dicom_web.studies().getStudyMetrics(study=study).execute()
    series_metrics = dicom_web.studies().series().getSeriesMetrics(series=series).execute()

    assert study_metrics["study"] == study
    assert (study_metrics["seriesCount"], study_metrics["instanceCount"]) == ("2", "6")
    assert study_metrics["blobStorageSizeBytes"] == str(sum(len(i.data) for i in instances))
    assert series_metrics["series"] == series and series_metrics["instanceCount"] == "3"
