"""dicomStores.export to Cloud Storage through google-api-python-client, objects read back from fake-gcs-server.

Exported DICOM is checked by independent readers (dcmdump for the meta header, pydicom for pixels), rendered
images by Pillow.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import warnings

import numpy as np
import pydicom
import pytest
import requests
from googleapiclient.errors import HttpError
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_samples import synthetic_instance
from healthcare_emulator.dicom import pixels
from tests.helpers import wait

pytestmark = pytest.mark.integration

EXPLICIT_LE = "1.2.840.10008.1.2.1"
LOSSLESS = ("1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90")


# --- helpers -------------------------------------------------------------------------------------


def export(healthcare, store, uri_prefix: str, mime_type: str | None = None,
           filter_uri: str | None = None) -> dict:
    destination = {"uriPrefix": uri_prefix}
    if mime_type is not None:
        destination["mimeType"] = mime_type
    body: dict = {"gcsDestination": destination}
    if filter_uri:
        body["filterConfig"] = {"resourcePathsGcsUri": filter_uri}
    stores = healthcare.projects().locations().datasets().dicomStores()
    return wait(healthcare, stores.export(name=store.name, body=body).execute())


def load(healthcare, store, bucket, files: dict[str, bytes]) -> None:
    """Put Part-10 files into the store with dicomStores.import."""
    folder = f"import-{time.monotonic_ns()}"
    for name, data in files.items():
        bucket.blob(f"{folder}/{name}").upload_from_string(data)
    stores = healthcare.projects().locations().datasets().dicomStores()
    operation = wait(healthcare, stores.import_(name=store.name,
                                                body={"gcsSource": {"uri": f"gs://{bucket.name}/{folder}/*"}}).execute())
    assert operation["metadata"]["counter"] == {"success": str(len(files))}, operation


def objects(bucket, prefix: str) -> dict[str, bytes]:
    return {blob.name: blob.download_as_bytes() for blob in bucket.client.list_blobs(bucket.name, prefix=prefix)}


def corpus(name: str) -> bytes:
    with open(get_testdata_file(name), "rb") as fh:
        return fh.read()


def read(data: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def uids(data: bytes) -> str:
    ds = read(data)
    return f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}"


def files_by_key(files: dict[str, bytes]) -> dict[str, bytes]:
    return {uids(data): data for data in files.values()}


def multiframe(frames: int = 3, rows: int = 40, columns: int = 48) -> bytes:
    """An 8-bit multi-frame grayscale Secondary Capture instance, each frame a different ramp."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte SC Image Storage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Synthetic^Frames", "SYNTH-MF", "OT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ramp = np.arange(rows * columns, dtype=np.uint32).reshape(rows, columns)
    ds.PixelData = np.stack([(ramp * (n + 1)) % 256 for n in range(frames)]).astype(np.uint8).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def syntax_in_meta_header(data: bytes, tmp_path) -> str:
    """The transfer syntax UID as dcmtk's dcmdump reads it from the file meta header."""
    path = tmp_path / f"{time.monotonic_ns()}.dcm"
    path.write_bytes(data)
    result = subprocess.run(["dcmdump", "-q", "-Un", "+P", "0002,0010", str(path)], capture_output=True, text=True,
                            timeout=30, check=True)
    return result.stdout.split("[", 1)[1].split("]", 1)[0]


def log_entries(operation: dict) -> list[dict]:
    return requests.get(operation["metadata"]["logsUrl"], timeout=10).json()["entries"]


# --- tests ---------------------------------------------------------------------------------------


def test_unset_mime_type_exports_every_instance_as_stored_under_study_series_instance(healthcare, new_store,
                                                                                      new_bucket):
    store, bucket = new_store(), new_bucket()
    files = {f"ct{n}.dcm": synthetic_instance(seed=n).data for n in range(2)}
    files["plan.dcm"] = corpus("rtplan.dcm")
    files["rle.dcm"] = corpus("SC_rgb_rle_2frame.dcm")
    load(healthcare, store, bucket, files)

    operation = export(healthcare, store, f"gs://{bucket.name}/out")

    assert "error" not in operation
    assert operation["response"]["@type"].endswith("ExportDicomDataResponse")
    assert operation["metadata"]["apiMethodName"].endswith("DicomService.ExportDicomData")
    assert operation["metadata"]["counter"] == {"success": "4"}
    written = objects(bucket, "out/")
    # One .dcm per instance, even multi-frame, with the stored bytes unchanged.
    assert written == {f"out/{uids(data)}.dcm": data for data in files.values()}


def test_uri_prefix_trailing_slash_and_bucket_root(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    data = synthetic_instance(seed=7).data
    load(healthcare, store, bucket, {"a.dcm": data})

    export(healthcare, store, f"gs://{bucket.name}/slash/")
    export(healthcare, store, f"gs://{bucket.name}")

    names = {blob.name for blob in bucket.client.list_blobs(bucket.name) if not blob.name.startswith("import-")}
    assert names == {f"slash/{uids(data)}.dcm", f"{uids(data)}.dcm"}


def test_lossless_transcodes_read_back_by_dcmdump_and_pydicom_with_identical_pixels(healthcare, new_store,
                                                                                    new_bucket, tmp_path):
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmtk's dcmdump is not installed")
    store, bucket = new_store(), new_bucket()
    files = {"ct.dcm": synthetic_instance(seed=11).data, "rgb.dcm": corpus("SC_rgb_rle_2frame.dcm"),
             "jls.dcm": corpus("MR_small_jpeg_ls_lossless.dcm"), "mf.dcm": multiframe()}
    load(healthcare, store, bucket, files)
    originals = {uids(data): read(data).pixel_array for data in files.values()}

    for syntax in (*LOSSLESS, "*"):
        folder = f"ts-{syntax}"
        operation = export(healthcare, store, f"gs://{bucket.name}/{folder}",
                           f"application/dicom; transfer-syntax={syntax}")
        assert operation["metadata"]["counter"] == {"success": "4"}, (syntax, log_entries(operation))
        written = objects(bucket, f"{folder}/")
        assert set(written) == {f"{folder}/{key}.dcm" for key in originals}
        for name, data in written.items():
            key = name[len(folder) + 1:-len(".dcm")]
            expected_syntax = syntax if syntax != "*" else read(files_by_key(files)[key]).file_meta.TransferSyntaxUID
            assert syntax_in_meta_header(data, tmp_path) == expected_syntax
            ds = read(data)
            assert ds.file_meta.TransferSyntaxUID == expected_syntax
            np.testing.assert_array_equal(ds.pixel_array, originals[key], err_msg=f"{key} as {syntax}")



def test_a_multi_instance_store_exports_to_every_written_syntax_repeatedly_without_crashing(emulator, healthcare,
                                                                                           new_store, new_bucket):
    # Issue 17: 8 export threads encoding JPEG 2000 at once killed the emulator (pylibjpeg-openjpeg is not
    # thread-safe). 256x256 is large enough to crash it reliably without the lock; several rounds, every syntax.
    store, bucket = new_store(), new_bucket()
    files = {f"ct{n}.dcm": synthetic_instance(seed=n, rows=256, columns=256).data for n in range(6)}
    files |= {f"sc{n}.dcm": multiframe(frames=1, rows=256, columns=256) for n in range(2)}  # 8-bit: JPEG baseline
    load(healthcare, store, bucket, files)
    for round_number in range(3):
        for syntax in pixels.TRANSCODE_TARGETS:
            folder = f"r{round_number}-{syntax}"
            operation = export(healthcare, store, f"gs://{bucket.name}/{folder}",
                               f"application/dicom; transfer-syntax={syntax}")
            counter = operation["metadata"]["counter"]
            if syntax == pixels.JPEG_BASELINE:  # 16-bit CT cannot be JPEG baseline: counted, named failures
                assert counter == {"success": "2", "failure": "6"}, log_entries(operation)
            else:
                assert counter == {"success": "8"}, (syntax, log_entries(operation))
                assert len(objects(bucket, f"{folder}/")) == 8
    assert requests.get(f"{emulator.url}/_emulator/health", timeout=10).json()["status"] == "ok"


def test_plain_application_dicom_is_explicit_vr_little_endian_and_lossy_targets_are_flagged(healthcare, new_store,
                                                                                           new_bucket, tmp_path):
    store, bucket = new_store(), new_bucket()
    rgb = corpus("SC_rgb_rle_2frame.dcm")
    load(healthcare, store, bucket, {"rgb.dcm": rgb})
    name = f"{uids(rgb)}.dcm"

    export(healthcare, store, f"gs://{bucket.name}/plain", "application/dicom")
    export(healthcare, store, f"gs://{bucket.name}/jpeg", "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50")

    assert read(bucket.blob(f"plain/{name}").download_as_bytes()).file_meta.TransferSyntaxUID == EXPLICIT_LE
    jpeg = bucket.blob(f"jpeg/{name}").download_as_bytes()
    assert syntax_in_meta_header(jpeg, tmp_path) == "1.2.840.10008.1.2.4.50"
    ds = read(jpeg)
    assert (ds.LossyImageCompression, ds.PhotometricInterpretation, ds.NumberOfFrames) == ("01", "YBR_FULL_422", 2)
    assert np.abs(ds.pixel_array.astype(int) - read(rgb).pixel_array.astype(int)).mean() < 4


@pytest.mark.parametrize(("mime_type", "extension", "image_format"), [
    ("image/png", ".png", "PNG"),
    ("image/jpeg", ".jpg", "JPEG"),
    ("image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50", ".jpg", "JPEG"),
])
def test_rendered_images_one_per_frame_with_the_right_size_and_mode(healthcare, new_store, new_bucket, mime_type,
                                                                     extension, image_format):
    store, bucket = new_store(), new_bucket()
    ct = synthetic_instance(seed=5, rows=32, columns=48).data
    rgb, frames = corpus("SC_rgb_rle_2frame.dcm"), multiframe()
    load(healthcare, store, bucket, {"ct.dcm": ct, "rgb.dcm": rgb, "mf.dcm": frames})

    operation = export(healthcare, store, f"gs://{bucket.name}/img", mime_type)

    assert operation["metadata"]["counter"] == {"success": "3"}
    written = objects(bucket, "img/")
    expected = {f"img/{uids(ct)}{extension}": ((48, 32), "L"),
                **{f"img/{uids(rgb)}/{n}{extension}": ((100, 100), "RGB") for n in (1, 2)},
                **{f"img/{uids(frames)}/{n}{extension}": ((48, 40), "L") for n in (1, 2, 3)}}
    assert set(written) == set(expected)
    for name, data in written.items():
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.size, image.mode) == (image_format, *expected[name]), name
    if image_format == "PNG":  # lossless: frame n of the ramp instance is exactly its min/max-stretched frame
        second = np.asarray(Image.open(io.BytesIO(written[f"img/{uids(frames)}/2.png"])), dtype=float)
        source = read(frames).pixel_array[1].astype(float)
        stretched = (source - source.min()) / (source.max() - source.min()) * 255
        np.testing.assert_array_equal(second, np.rint(stretched))


def test_octet_stream_frames_raw_and_as_stored(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    rgb, ct = corpus("SC_rgb_rle_2frame.dcm"), synthetic_instance(seed=9).data
    load(healthcare, store, bucket, {"rgb.dcm": rgb, "ct.dcm": ct})

    export(healthcare, store, f"gs://{bucket.name}/raw", f"application/octet-stream; transfer-syntax={EXPLICIT_LE}")
    export(healthcare, store, f"gs://{bucket.name}/stored", "application/octet-stream; transfer-syntax=*")

    raw, stored = objects(bucket, "raw/"), objects(bucket, "stored/")
    decoded = read(rgb).pixel_array
    assert raw == {f"raw/{uids(rgb)}/1": decoded[0].tobytes(), f"raw/{uids(rgb)}/2": decoded[1].tobytes(),
                   f"raw/{uids(ct)}": read(ct).PixelData}
    compressed = [bytes(frame) for frame in generate_frames(read(rgb).PixelData, number_of_frames=2)]
    assert stored == {f"stored/{uids(rgb)}/1": compressed[0], f"stored/{uids(rgb)}/2": compressed[1],
                      f"stored/{uids(ct)}": read(ct).PixelData}
    blob = bucket.get_blob(f"raw/{uids(ct)}")
    assert blob.content_type == "application/octet-stream"


def test_filter_file_limits_the_export(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    study = generate_uid()
    series_a, series_b = generate_uid(), generate_uid()
    a = [synthetic_instance(study, series_a, seed=n).data for n in range(2)]
    b = [synthetic_instance(study, series_b, seed=10 + n).data for n in range(2)]
    other = synthetic_instance(seed=20).data
    load(healthcare, store, bucket, {f"{n}.dcm": data for n, data in enumerate([*a, *b, other])})
    picked_b = read(b[1])
    bucket.blob("filters/some.txt").upload_from_string(
        f"/studies/{study}/series/{series_a}\n"
        f"/studies/{study}/series/{series_b}/instances/{picked_b.SOPInstanceUID}\n")

    operation = export(healthcare, store, f"gs://{bucket.name}/filtered",
                       filter_uri=f"gs://{bucket.name}/filters/some.txt")

    assert operation["metadata"]["counter"] == {"success": "3"}
    assert set(objects(bucket, "filtered/")) == {f"filtered/{uids(data)}.dcm" for data in (*a, b[1])}


def test_existing_objects_are_overwritten(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    data = synthetic_instance(seed=30).data
    load(healthcare, store, bucket, {"x.dcm": data})
    target = bucket.blob(f"again/{uids(data)}.dcm")
    target.upload_from_string(b"stale content")

    export(healthcare, store, f"gs://{bucket.name}/again")
    export(healthcare, store, f"gs://{bucket.name}/again")

    assert bucket.blob(f"again/{uids(data)}.dcm").download_as_bytes() == data


def test_instances_that_cannot_be_rendered_fail_alone_with_a_reason(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    ct, plan, report = synthetic_instance(seed=40).data, corpus("rtplan.dcm"), corpus("test-SR.dcm")
    load(healthcare, store, bucket, {"ct.dcm": ct, "plan.dcm": plan, "sr.dcm": report})

    operation = export(healthcare, store, f"gs://{bucket.name}/png", "image/png")

    assert operation["metadata"]["counter"] == {"success": "1", "failure": "2"}
    assert operation["error"]["code"] == 3
    assert "2 of 3 instances failed to export" in operation["error"]["message"]
    assert set(objects(bucket, "png/")) == {f"png/{uids(ct)}.png"}
    reasons = {entry["resource"]: entry["message"] for entry in log_entries(operation)}
    for data, sop_class in ((plan, "RT Plan Storage"), (report, "Comprehensive SR Storage")):
        ds = read(data)
        resource = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        assert "no pixel data" in reasons[resource] and sop_class in reasons[resource]
        assert "image/png" in reasons[resource]


def test_a_transcode_the_encoder_cannot_do_is_a_counted_failure(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    ct, rgb = synthetic_instance(seed=50).data, corpus("SC_rgb_rle.dcm")
    load(healthcare, store, bucket, {"ct.dcm": ct, "rgb.dcm": rgb})

    operation = export(healthcare, store, f"gs://{bucket.name}/jpeg",
                       "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50")

    assert operation["metadata"]["counter"] == {"success": "1", "failure": "1"}
    (entry,) = log_entries(operation)
    assert "BitsAllocated=16" in entry["message"]
    assert set(objects(bucket, "jpeg/")) == {f"jpeg/{uids(rgb)}.dcm"}


@pytest.mark.parametrize(("mime_type", "status", "phrase"), [
    ("image/gif", 400, "'image/gif'"),
    ("application/dicom; transfer-syntax=1.2.3.4", 400, "transfer-syntax=1.2.3.4"),
    ("image/png; transfer-syntax=1.2.840.10008.1.2.1", 400, "image/png; transfer-syntax"),
    ("application/dicom; charset=utf-8", 400, "charset=utf-8"),
    ("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.201", 501, "HTJ2K Lossless"),
])
def test_bad_mime_type_is_rejected_before_the_operation_starts(healthcare, new_store, mime_type, status, phrase):
    store = new_store()
    stores = healthcare.projects().locations().datasets().dicomStores()
    with pytest.raises(HttpError) as caught:
        stores.export(name=store.name,
                      body={"gcsDestination": {"uriPrefix": "gs://some-bucket/x", "mimeType": mime_type}}).execute()
    assert caught.value.resp.status == status
    message = json.loads(caught.value.content)["error"]["message"]
    assert phrase in message
    assert "application/dicom; transfer-syntax=*" in message  # the message lists what is supported


@pytest.mark.parametrize("uri_prefix", ["", "s3://bucket/x", "gs://", "gs://UPPER/x"])
def test_bad_uri_prefix_is_a_400(healthcare, new_store, uri_prefix):
    store = new_store()
    stores = healthcare.projects().locations().datasets().dicomStores()
    with pytest.raises(HttpError) as caught:
        stores.export(name=store.name, body={"gcsDestination": {"uriPrefix": uri_prefix}}).execute()
    assert caught.value.resp.status == 400
    assert "uriPrefix" in str(caught.value)


def test_missing_bucket_fails_the_operation_with_not_found(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    load(healthcare, store, bucket, {"a.dcm": synthetic_instance(seed=60).data})

    operation = export(healthcare, store, "gs://no-such-bucket-for-export/x")

    assert operation["error"]["code"] == 5
    assert "gs://no-such-bucket-for-export" in operation["error"]["message"]
