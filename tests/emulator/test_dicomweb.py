"""DICOMweb against the emulator with real clients over HTTP: dicomweb-client, requests, google-api-python-client."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames
from pydicom.pixels import pack_bits

from dicom_samples import SyntheticInstance, synthetic_instance, synthetic_studies

pytestmark = pytest.mark.integration

PIXEL_DATA = "7FE00010"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _corpus_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def _dataset(instance: SyntheticInstance) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(instance.data))


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def _value(result: dict, tag: str):
    return result.get(tag, {}).get("Value", [None])[0]


def _multipart(parts: list[bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


@pytest.fixture
def store(new_store):
    return new_store()


@pytest.fixture
def web(emulator, store) -> str:
    return f"{emulator.url}/v1/{store.name}/dicomWeb"


@pytest.fixture
def client(web: str) -> DICOMwebClient:
    return DICOMwebClient(url=web)


@pytest.fixture
def studies(client: DICOMwebClient) -> list[SyntheticInstance]:
    """3 studies x 2 series x 2 instances, stored through STOW-RS; patients SYNTH-0000..0002."""
    instances = list(synthetic_studies(studies=3, series_per_study=2, instances_per_series=2))
    response = client.store_instances([_dataset(i) for i in instances])
    assert len(response.ReferencedSOPSequence) == len(instances)
    return instances


# --- STOW-RS -----------------------------------------------------------------------------------------


def test_stow_reports_every_stored_instance_with_its_retrieve_url(client, web):
    instances = list(synthetic_studies(studies=1, series_per_study=1, instances_per_series=3))
    response = client.store_instances([_dataset(i) for i in instances])

    referenced = {item.ReferencedSOPInstanceUID: item for item in response.ReferencedSOPSequence}
    assert set(referenced) == {i.sop_uid for i in instances}
    first = instances[0]
    assert referenced[first.sop_uid].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert referenced[first.sop_uid].RetrieveURL == (
        f"{web}/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}")
    assert response.RetrieveURL == f"{web}/studies/{first.study_uid}"
    assert "FailedSOPSequence" not in response


def test_stow_single_part_application_dicom_and_identical_restore_succeed(web):
    instance = synthetic_instance(seed=3)
    for _ in range(2):  # the second store is an identical duplicate: accepted, nothing changes
        answer = requests.post(f"{web}/studies", data=instance.data, headers={"Content-Type": "application/dicom"},
                               timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == "application/dicom+json"
        assert answer.json()["00081199"]["Value"][0]["00081155"]["Value"] == [instance.sop_uid]
    assert len(requests.get(f"{web}/instances", timeout=10).json()) == 1


def test_stow_changed_bytes_is_409_with_google_failure_detail(web):
    original = synthetic_instance(seed=1)
    changed = synthetic_instance(original.study_uid, original.series_uid, original.sop_uid, seed=2)
    requests.post(f"{web}/studies", data=original.data, headers={"Content-Type": "application/dicom"}, timeout=10)

    answer = requests.post(f"{web}/studies", data=changed.data, headers={"Content-Type": "application/dicom"},
                           timeout=10)

    assert answer.status_code == 409
    body = answer.json()
    failed = body["00081198"]["Value"][0]
    assert failed["00081197"] == {"vr": "US", "Value": [272]}
    assert failed["00081155"]["Value"] == [original.sop_uid]
    assert failed["00090010"]["Value"] == ["GOOGLE"]
    assert "checksum mismatch" in failed["00090097"]["Value"][0]
    assert body["00081190"]["Value"] == [f"{web}/studies/{original.study_uid}"]
    assert "00081199" not in body
    # The stored instance is untouched.
    stored = requests.get(f"{web}/studies/{original.study_uid}/series/{original.series_uid}/instances/"
                          f"{original.sop_uid}", headers={"Accept": "application/dicom; transfer-syntax=*"},
                          timeout=10)
    assert stored.content == original.data


def test_stow_partial_failure_is_202_and_invalid_dicom_names_the_reason(web):
    good = synthetic_instance(seed=4)
    body, content_type = _multipart([good.data, b"this is not DICOM"])

    answer = requests.post(f"{web}/studies", data=body, headers={"Content-Type": content_type}, timeout=10)

    assert answer.status_code == 202, answer.text
    result = answer.json()
    assert [i["00081155"]["Value"][0] for i in result["00081199"]["Value"]] == [good.sop_uid]
    detail = result["00081198"]["Value"][0]["00090097"]["Value"][0]
    assert "part 2" in detail and "DICM" in detail

    only_bad = requests.post(f"{web}/studies", data=b"garbage" * 40, headers={"Content-Type": "application/dicom"},
                             timeout=10)
    assert only_bad.status_code == 409
    assert "DICM" in only_bad.json()["00081198"]["Value"][0]["00090097"]["Value"][0]


def test_stow_to_a_study_rejects_instances_of_other_studies(web, client):
    mine, other = synthetic_instance(seed=5), synthetic_instance(seed=6)
    body, content_type = _multipart([mine.data, other.data])

    answer = requests.post(f"{web}/studies/{mine.study_uid}", data=body, headers={"Content-Type": content_type},
                           timeout=10)

    assert answer.status_code == 202
    result = answer.json()
    assert result["00081190"]["Value"] == [f"{web}/studies/{mine.study_uid}"]
    failure = result["00081198"]["Value"][0]
    assert failure["00081155"]["Value"] == [other.sop_uid]
    assert other.study_uid in failure["00090097"]["Value"][0]
    assert [_value(s, "0020000D") for s in client.search_for_studies()] == [mine.study_uid]


def test_stow_larger_than_one_chunk_uses_chunked_transfer_encoding(client):
    # dicomweb-client switches to Transfer-Encoding: chunked above its 1 MB chunk size.
    instances = list(synthetic_studies(studies=1, series_per_study=1, instances_per_series=3, sizes=(512,)))
    assert sum(len(i.data) for i in instances) > 10**6
    response = client.store_instances([_dataset(i) for i in instances])
    assert len(response.ReferencedSOPSequence) == 3
    first = instances[0]
    assert client.retrieve_instance(first.study_uid, first.series_uid, first.sop_uid).PixelData == _dataset(
        first).PixelData


def test_stow_with_dicomweb_client_to_a_study_path(client):
    instance = synthetic_instance(seed=7)
    response = client.store_instances([_dataset(instance)], study_instance_uid=instance.study_uid)
    assert response.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == instance.sop_uid


# --- QIDO-RS -----------------------------------------------------------------------------------------


def test_qido_levels_counts_and_default_attributes(client, studies):
    found = client.search_for_studies()
    assert len(found) == 3
    by_patient = {_value(s, "00100020"): s for s in found}
    study = by_patient["SYNTH-0001"]
    assert _value(study, "00201206") == 2 and _value(study, "00201208") == 4
    assert study["00080061"]["Value"] == ["MR"]
    assert study["00100010"]["Value"] == [{"Alphabetic": "Synthetic^Patient0001"}]
    assert _value(study, "00081190").endswith(f"/studies/{_value(study, '0020000D')}")
    assert "00080060" not in study  # Modality is a series attribute

    assert len(client.search_for_series()) == 6
    in_study = client.search_for_series(_value(study, "0020000D"))
    assert len(in_study) == 2
    assert all(_value(s, "00201209") == 2 and _value(s, "00080060") == "MR" for s in in_study)
    assert "00100020" not in in_study[0]  # study attributes only for /series (relational)
    assert _value(client.search_for_series()[0], "00100020") is not None

    instances = client.search_for_instances()
    assert len(instances) == 12
    assert {_value(i, "00080018") for i in instances} == {i.sop_uid for i in studies}
    assert _value(instances[0], "00280010") == 64 and _value(instances[0], "00280100") == 16
    assert _value(instances[0], "00100020") is not None  # /instances includes study and series attributes
    first = studies[0]
    scoped = client.search_for_instances(first.study_uid, first.series_uid)
    assert len(scoped) == 2 and "00100020" not in scoped[0]
    in_study = client.search_for_instances(first.study_uid)
    assert len(in_study) == 4
    assert _value(in_study[0], "0020000E") is not None and "00100020" not in in_study[0]  # series level added


def test_qido_matching(client, studies):
    def patients(**filters: str) -> list[str]:
        return sorted(_value(s, "00100020") for s in client.search_for_studies(search_filters=filters))

    assert patients(PatientID="SYNTH-0002") == ["SYNTH-0002"]
    assert patients(**{"00100020": "SYNTH-0002"}) == ["SYNTH-0002"]  # by tag
    assert patients(PatientID="SYNTH-000?") == ["SYNTH-0000", "SYNTH-0001", "SYNTH-0002"]
    assert patients(PatientID="synth-*") == []  # wildcards are case-sensitive except for PN
    assert patients(PatientName="synthetic^patient0001") == ["SYNTH-0001"]  # PN: case-insensitive
    assert patients(PatientName="*PATIENT000[12]") == []  # only * and ? are wildcards
    assert patients(PatientName="*patient000?") == ["SYNTH-0000", "SYNTH-0001", "SYNTH-0002"]
    # StudyDate is 2024{01+index}15
    assert patients(StudyDate="20240215") == ["SYNTH-0001"]
    assert patients(StudyDate="20240201-20240331") == ["SYNTH-0001", "SYNTH-0002"]
    assert patients(StudyDate="-20240215") == ["SYNTH-0000", "SYNTH-0001"]
    assert patients(StudyDate="20240301-") == ["SYNTH-0002"]
    assert patients(StudyTime="1000-1100") == ["SYNTH-0000", "SYNTH-0001", "SYNTH-0002"]
    assert patients(StudyTime="-0959") == []
    assert patients(ModalitiesInStudy="CT") == ["SYNTH-0000", "SYNTH-0002"]
    assert patients(AccessionNumber="") == ["SYNTH-0000", "SYNTH-0001", "SYNTH-0002"]  # universal matching
    # UID list matching, comma or backslash separated
    uids = [studies[0].study_uid, studies[-1].study_uid]
    assert patients(StudyInstanceUID=",".join(uids)) == ["SYNTH-0000", "SYNTH-0002"]
    assert patients(StudyInstanceUID="\\".join(uids)) == ["SYNTH-0000", "SYNTH-0002"]
    # An attribute of the instances (not a study attribute) matches a study when any instance matches.
    assert patients(InstanceNumber="2", PatientID="SYNTH-0001") == ["SYNTH-0001"]
    series = client.search_for_series(search_filters={"SeriesDescription": "*series 2", "Modality": "CT"})
    assert len(series) == 2
    assert len(client.search_for_instances(search_filters={"InstanceNumber": 1, "PatientID": "SYNTH-0000"})) == 2
    assert len(client.search_for_instances(search_filters={"SliceThickness": "1.25"})) == 12  # DS as a number


def test_qido_includefield_limit_offset_and_fuzzymatching(client, studies, web):
    found = client.search_for_studies(fields=["StudyDescription", "00100030"],
                                      search_filters={"PatientID": "SYNTH-0000"})
    assert _value(found[0], "00081030") == "Synthetic CT study"
    assert _value(found[0], "00100030") == "19700101"
    everything = client.search_for_instances(fields=["all"], limit=1)
    assert _value(everything[0], "00180050") == 1.25 and PIXEL_DATA not in everything[0]
    assert not any(tag.startswith("0002") for tag in everything[0])
    comma = requests.get(f"{web}/studies", params={"includefield": "StudyDescription,PatientSex"}, timeout=10).json()
    assert all("00081030" in s and "00100040" in s for s in comma)

    all_uids = [_value(s, "0020000D") for s in client.search_for_studies()]
    page = [_value(s, "0020000D") for s in client.search_for_studies(limit=2, offset=1)]
    assert page == all_uids[1:3]
    assert client.search_for_studies(offset=3) == []
    assert len(client.search_for_studies(get_remaining=True, limit=1)) == 3

    fuzzy = requests.get(f"{web}/studies", params={"PatientName": "synthetic*", "fuzzymatching": "true"},
                         timeout=10)
    assert fuzzy.status_code == 200 and len(fuzzy.json()) == 3
    assert "fuzzymatching parameter is not supported" in fuzzy.headers["Warning"]


def test_qido_empty_result_is_204_and_dicomweb_client_copes(client, web, studies):
    answer = requests.get(f"{web}/studies", params={"PatientID": "NOBODY"}, timeout=10)
    assert answer.status_code == 204 and answer.content == b""
    assert client.search_for_studies(search_filters={"PatientID": "NOBODY"}) == []
    assert client.search_for_series("1.2.3.4") == []


# --- WADO-RS -----------------------------------------------------------------------------------------


def test_wado_retrieves_instances_exactly_as_stored(client, web, studies):
    first = studies[0]
    study = client.retrieve_study(first.study_uid)
    assert len(study) == 4
    series = client.retrieve_series(first.study_uid, first.series_uid)
    assert sorted(ds.SOPInstanceUID for ds in series) == sorted(
        i.sop_uid for i in studies if i.series_uid == first.series_uid)
    instance = client.retrieve_instance(first.study_uid, first.series_uid, first.sop_uid)
    assert instance.PixelData == _dataset(first).PixelData

    raw = requests.get(f"{web}/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}",
                       headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
                       timeout=10)
    assert raw.headers["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    boundary = raw.headers["Content-Type"].split("boundary=")[1]
    part = raw.content.split(f"--{boundary}".encode())[1]
    assert part.split(b"\r\n\r\n", 1)[1][:-2] == first.data  # byte for byte, CRLF before the next delimiter


def test_wado_metadata_has_absolute_bulkdata_uris_and_no_file_meta(client, web, studies):
    first = studies[0]
    metadata = client.retrieve_study_metadata(first.study_uid)
    assert len(metadata) == 4
    assert not any(tag.startswith("0002") for item in metadata for tag in item)
    assert len(client.retrieve_series_metadata(first.study_uid, first.series_uid)) == 2
    instance = client.retrieve_instance_metadata(first.study_uid, first.series_uid, first.sop_uid)
    uri = instance[PIXEL_DATA]["BulkDataURI"]
    assert uri.startswith(f"{web}/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}/")
    assert uri.endswith("/bulkdata/7FE00010")
    assert client.retrieve_bulkdata(uri) == [_dataset(first).PixelData]
    assert pydicom.Dataset.from_json(instance, bulk_data_uri_handler=lambda *_: b"").PatientID == "SYNTH-0000"


def test_wado_frames_native_big_endian_and_compressed(client, web):
    # rtdose_expb: 15 frames of 32-bit big-endian pixels; frames come back little endian (octet-stream).
    big_endian = _read(_corpus_file("rtdose_expb.dcm"))
    client.store_instances([big_endian])
    uids = (big_endian.StudyInstanceUID, big_endian.SeriesInstanceUID, big_endian.SOPInstanceUID)
    frames = client.retrieve_instance_frames(*uids, frame_numbers=[1, 15])
    expected = big_endian.pixel_array.astype("<u4")
    assert frames == [expected[0].tobytes(), expected[14].tobytes()]

    rle = _read(_corpus_file("SC_rgb_rle_2frame.dcm"))
    requests.post(f"{web}/studies", data=_corpus_file("SC_rgb_rle_2frame.dcm").read_bytes(),
                  headers={"Content-Type": "application/dicom"}, timeout=10).raise_for_status()
    path = f"{web}/studies/{rle.StudyInstanceUID}/series/{rle.SeriesInstanceUID}/instances/{rle.SOPInstanceUID}"
    # The real API's default for frames is octet-stream explicit VR LE: compressed frames come back decoded.
    assert client.retrieve_instance_frames(rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID,
                                           frame_numbers=[2]) == [rle.pixel_array[1].tobytes()]
    stored = client.retrieve_instance_frames(rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID,
                                             frame_numbers=[2],
                                             media_types=(("image/dicom-rle", "1.2.840.10008.1.2.5"),))
    assert stored == [list(generate_frames(rle.PixelData, number_of_frames=2))[1]]
    raw = requests.get(f"{path}/frames/1", headers={
        "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}, timeout=10)
    assert raw.headers["Content-Type"].startswith('multipart/related; type="image/dicom-rle"')
    assert b"Content-Type: image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5" in raw.content
    jpeg_ls = requests.get(f"{path}/frames/1", headers={"Accept": 'multipart/related; type="image/jls"'}, timeout=10)
    assert b"Content-Type: image/jls; transfer-syntax=1.2.840.10008.1.2.4.80" in jpeg_ls.content
    png = requests.get(f"{path}/frames/1", headers={"Accept": 'multipart/related; type="image/png"'}, timeout=10)
    assert png.status_code == 406 and "image/png" in png.json()["error"]["message"]
    missing = requests.get(f"{path}/frames/3", timeout=10)
    assert missing.status_code == 404 and "frame 3" in missing.json()["error"]["message"]


def test_wado_bulkdata_inside_a_sequence(client, web):
    # A binary value > 1 KB nested in a sequence gets a bulkdata path through the item index.
    instance = _dataset(synthetic_instance(seed=8))
    item = pydicom.Dataset()
    item.add_new(0x00091010, "LO", "TEST")  # private creator so the private OB below is well formed
    item.add_new(0x00091011, "OB", bytes(range(256)) * 8)
    instance.ReferencedImageSequence = pydicom.Sequence([pydicom.Dataset(), item])
    client.store_instances([instance])
    metadata = client.retrieve_instance_metadata(instance.StudyInstanceUID, instance.SeriesInstanceUID,
                                                 instance.SOPInstanceUID)
    uri = metadata["00081140"]["Value"][1]["00091011"]["BulkDataURI"]
    assert uri.endswith("/bulkdata/00081140/1/00091011")
    assert client.retrieve_bulkdata(uri) == [bytes(range(256)) * 8]
    bad = requests.get(uri.replace("/1/", "/7/"), timeout=10)
    assert bad.status_code == 404 and "item 7" in bad.json()["error"]["message"]


def test_wado_accept_negotiation(web, studies):
    first = studies[0]
    path = f"{web}/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}"
    for ok in ("*/*", 'multipart/related; type="application/dicom"',
               'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'):
        assert requests.get(path, headers={"Accept": ok}, timeout=10).status_code == 200, ok
    single = requests.get(path, headers={"Accept": "application/dicom"}, timeout=10)
    assert single.headers["Content-Type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    assert single.content == first.data
    jpeg = requests.get(path, headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'}, timeout=10)
    assert jpeg.status_code == 406  # 16-bit CT cannot be JPEG baseline; the reason names the instance
    assert first.sop_uid in jpeg.json()["error"]["message"] and "8-bit" in jpeg.json()["error"]["message"]
    big_endian = requests.get(path, headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.2'}, timeout=10)
    assert big_endian.status_code == 406 and "supported" in big_endian.json()["error"]["message"]
    htj2k = requests.get(path, headers={"Accept": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.201"},
                         timeout=10)
    assert htj2k.status_code == 406 and "no encoder" in htj2k.json()["error"]["message"]
    study_rendered = requests.get(f"{web}/studies/{first.study_uid}/rendered", timeout=10)
    assert study_rendered.status_code == 400 and "instances and frames" in study_rendered.json()["error"]["message"]
    gif = requests.get(f"{path}/rendered", headers={"Accept": "image/gif"}, timeout=10)
    assert gif.status_code == 406 and "image/png" in gif.json()["error"]["message"]
    xml = requests.get(f"{path}/metadata", headers={"Accept": "application/dicom+xml"}, timeout=10)
    assert xml.status_code == 406


# --- deletes -----------------------------------------------------------------------------------------


def _wait(healthcare, operation: dict, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while "done" not in operation:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        operation = healthcare.projects().locations().datasets().operations().get(name=operation["name"]).execute()
    return operation


def test_delete_study_is_an_operation_through_the_google_client(healthcare, store, client, studies):
    first = studies[0]
    study_api = healthcare.projects().locations().datasets().dicomStores().studies()

    operation = study_api.delete(parent=store.name, dicomWebPath=f"studies/{first.study_uid}").execute()

    assert operation["name"].startswith(f"{store.dataset_name}/operations/")
    done = _wait(healthcare, operation)
    assert "error" not in done and done["response"]["@type"] == "type.googleapis.com/google.protobuf.Empty"
    assert done["metadata"]["apiMethodName"].endswith("DicomWebService.DeleteStudy")
    assert first.study_uid not in {_value(s, "0020000D") for s in client.search_for_studies()}
    assert len(client.search_for_instances()) == 8
    with pytest.raises(Exception, match="404"):
        study_api.delete(parent=store.name, dicomWebPath=f"studies/{first.study_uid}").execute()


def test_delete_series_and_instance(healthcare, web, client, studies):
    first, last = studies[0], studies[-1]
    answer = requests.delete(f"{web}/studies/{first.study_uid}/series/{first.series_uid}", timeout=10)
    assert answer.status_code == 200
    _wait(healthcare, answer.json())
    assert len(client.search_for_instances(first.study_uid)) == 2

    client.delete_instance(last.study_uid, last.series_uid, last.sop_uid)
    remaining = {_value(i, "00080018") for i in client.search_for_instances()}
    assert last.sop_uid not in remaining and len(remaining) == 9
    again = requests.delete(f"{web}/studies/{last.study_uid}/series/{last.series_uid}/instances/{last.sop_uid}",
                            timeout=10)
    assert again.status_code == 404 and last.sop_uid in again.json()["error"]["message"]


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "named"),
    [
        ("GET", "studies/1.2.abc", {}, b"", 400, "1.2.abc"),
        ("GET", "studies/..%2F..", {}, b"", 404, "studies/../.."),
        ("GET", "studies/1.2.3/series/x/metadata", {}, b"", 400, "SeriesInstanceUID"),
        ("GET", "studies/1.2.3/thumbnail", {}, b"", 404, "studies/1.2.3/thumbnail"),
        ("GET", "studies/1.2.3/series/1.2/instances/1.2.3.4/frames/0", {}, b"", 400, "frames/1"),
        ("GET", "studies?NoSuchAttribute=1", {}, b"", 400, "NoSuchAttribute"),
        ("GET", "studies?includefield=Nope", {}, b"", 400, "Nope"),
        ("GET", "studies?offset=1000001", {}, b"", 400, "offset"),
        ("GET", "studies?limit=-1", {}, b"", 400, "limit"),
        ("GET", "studies?StudyDate=2024*", {}, b"", 400, "wildcards"),
        ("GET", "studies/1.2.3", {}, b"", 404, "study 1.2.3 not found"),
        ("POST", "studies", {"Content-Type": "text/plain"}, b"hello", 415, "text/plain"),
        ("POST", "studies", {}, b"hello", 415, "Content-Type"),
        ("POST", "studies", {"Content-Type": "multipart/related; type=\"application/dicom\""}, b"x", 400, "boundary"),
        ("POST", "studies", {"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=zz"},
         b"--zz\r\nContent-Type: application/dicom\r\n\r\nDICM...", 400, "truncated"),
        ("POST", "studies", {"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=zz"},
         b"no boundary here", 400, "no multipart boundary"),
        ("POST", "studies", {"Content-Type": "multipart/related; type=\"image/png\"; boundary=zz"}, b"x", 415,
         "image/png"),
        ("POST", "studies/1.2.3/series", {"Content-Type": "application/dicom"}, b"x", 405, "POST"),
        ("DELETE", "studies", {}, b"", 405, "DELETE"),
    ],
)
def test_errors_name_the_problem_and_the_emulator_keeps_serving(web, method, path, headers, body, status, named):
    answer = requests.request(method, f"{web}/{path}", headers=headers, data=body, timeout=10)

    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == status
    assert named in error["message"], error["message"]
    assert requests.get(f"{web}/studies", timeout=10).status_code in (200, 204)


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("studies/..", 400, "'..'"),
        ("studies/../../../../dicomStores", 404, "studies/../../../../dicomStores"),
        ("studies/%2E%2E/series/1.2/instances", 400, "'..'"),
    ],
)
def test_dot_segments_are_never_resolved(emulator, store, path, status, named):
    # http.client sends the path as written (requests would drop trailing dot segments itself).
    connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=10)
    connection.request("GET", f"/v1/{store.name}/dicomWeb/{path}")
    answer = connection.getresponse()
    error = json.loads(answer.read())["error"]
    connection.close()
    assert answer.status == status
    assert named in error["message"]


def test_missing_store_is_404(emulator, store):
    missing = store.name.rsplit("/", 1)[0] + "/nope"
    answer = requests.get(f"{emulator.url}/v1/{missing}/dicomWeb/studies", timeout=10)
    assert answer.status_code == 404 and "nope" in answer.json()["error"]["message"]


def test_retrieve_url_and_bulkdata_use_the_api_version_of_the_request(emulator, store, studies):
    first = studies[0]
    answer = requests.get(f"{emulator.url}/v1beta1/{store.name}/dicomWeb/studies/{first.study_uid}/metadata",
                          timeout=10)
    assert answer.status_code == 200
    assert json.loads(answer.content)[0][PIXEL_DATA]["BulkDataURI"].startswith(f"{emulator.url}/v1beta1/")


# --- WADO-RS through the pixel module: transcoding, rendered, bulk data, bit-packed frames -------------------


def _dcmtk(tool: str, data: bytes, tmp_path: Path, *args: str) -> pydicom.Dataset:
    """`data` passed through a dcmtk tool that writes a DICOM file (dcmdjpeg, dcmdjpls, dcmdrle…), read back."""
    if shutil.which(tool) is None:
        pytest.skip(f"dcmtk's {tool} is not installed")
    source, target = tmp_path / f"in-{time.monotonic_ns()}.dcm", tmp_path / f"out-{time.monotonic_ns()}.dcm"
    source.write_bytes(data)
    subprocess.run([tool, *args, str(source), str(target)], check=True, capture_output=True, timeout=60)
    return _read(target)


def _dcmdump_syntax(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / f"dump-{time.monotonic_ns()}.dcm"
    path.write_bytes(data)
    result = subprocess.run(["dcmdump", "-q", "-Un", "+P", "0002,0010", str(path)], capture_output=True, text=True,
                            timeout=30, check=True)
    return result.stdout.split("[", 1)[1].split("]", 1)[0]


def _store_file(web: str, data: bytes) -> pydicom.Dataset:
    requests.post(f"{web}/studies", data=data, headers={"Content-Type": "application/dicom"},
                  timeout=30).raise_for_status()
    return pydicom.dcmread(io.BytesIO(data))


def _instance_path(web: str, ds: pydicom.Dataset) -> str:
    return f"{web}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def _gray8(rows: int = 48, columns: int = 64, frames: int = 1) -> bytes:
    """An 8-bit grayscale Secondary Capture instance (JPEG baseline needs 8 bits), ramps per frame."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.PatientID, ds.Modality = "SYNTH-GRAY", "OT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ramp = np.add.outer(np.arange(rows), np.arange(columns))
    ds.PixelData = np.stack([(ramp * (n + 1)) % 256 for n in range(frames)]).astype(np.uint8).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_wado_default_is_explicit_vr_little_endian_and_transcodes_check_out_with_dcmtk(client, web, tmp_path):
    rle = _store_file(web, _corpus_file("SC_rgb_rle_2frame.dcm").read_bytes())
    jls = _store_file(web, _corpus_file("MR_small_jpeg_ls_lossless.dcm").read_bytes())
    gray = _store_file(web, _gray8())

    # Without a transfer syntax, compressed instances come back decompressed (the real API's default).
    for original in (rle, jls):
        retrieved = client.retrieve_instance(original.StudyInstanceUID, original.SeriesInstanceUID,
                                             original.SOPInstanceUID, media_types=("application/dicom",))
        assert retrieved.file_meta.TransferSyntaxUID == EXPLICIT_LE
        np.testing.assert_array_equal(retrieved.pixel_array, original.pixel_array)
        no_accept = requests.get(_instance_path(web, original), timeout=30)
        assert b"Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1" in no_accept.content
    as_stored = requests.get(_instance_path(web, jls), headers={"Accept": "application/dicom; transfer-syntax=*"},
                             timeout=30)
    assert as_stored.content == _corpus_file("MR_small_jpeg_ls_lossless.dcm").read_bytes()

    # Each encapsulated answer decoded by dcmtk (an independent decoder) and compared with the original pixels.
    checks = [("1.2.840.10008.1.2.5", "dcmdrle", rle, 0), ("1.2.840.10008.1.2.4.80", "dcmdjpls", jls, 0),
              ("1.2.840.10008.1.2.4.81", "dcmdjpls", jls, 2), ("1.2.840.10008.1.2.4.50", "dcmdjpeg", gray, 3)]
    for syntax, tool, original, tolerance in checks:
        answer = requests.get(_instance_path(web, original),
                              headers={"Accept": f"application/dicom; transfer-syntax={syntax}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == f"application/dicom; transfer-syntax={syntax}"
        assert _dcmdump_syntax(answer.content, tmp_path) == syntax
        decoded = _dcmtk(tool, answer.content, tmp_path).pixel_array.astype(int)
        difference = np.abs(decoded - original.pixel_array.astype(int))
        assert difference.max() <= tolerance if tolerance < 3 else difference.mean() < tolerance, syntax

    # A study retrieve transcodes every instance of the study, each part labelled with its syntax.
    parts = client.retrieve_study(rle.StudyInstanceUID, media_types=(("application/dicom", "1.2.840.10008.1.2.5"),))
    assert [ds.file_meta.TransferSyntaxUID for ds in parts] == ["1.2.840.10008.1.2.5"]


def test_wado_rendered_jpeg_and_png_with_viewport_match_dcmtk(client, web, tmp_path):
    if shutil.which("dcm2pnm") is None:
        pytest.skip("dcmtk's dcm2pnm is not installed")
    from PIL import Image

    instance = synthetic_instance(seed=21, rows=64, columns=80)
    client.store_instances([_dataset(instance)])
    uids = (instance.study_uid, instance.series_uid, instance.sop_uid)
    png = client.retrieve_instance_rendered(*uids, media_types=("image/png",))
    rendered = np.asarray(Image.open(io.BytesIO(png)))
    # dcm2pnm with the first VOI window (+Wi 1), as the emulator renders; rounding may differ by one.
    source = tmp_path / "ct.dcm"
    source.write_bytes(instance.data)
    subprocess.run(["dcm2pnm", "--write-png", "+Wi", "1", str(source), str(tmp_path / "ct.png")], check=True,
                   capture_output=True, timeout=60)
    expected = np.asarray(Image.open(tmp_path / "ct.png"))
    assert rendered.shape == (64, 80) and np.abs(rendered.astype(int) - expected.astype(int)).max() <= 1

    jpeg = client.retrieve_instance_rendered(*uids)  # no Accept: image/jpeg, the default
    assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).size == (80, 64)
    thumbnail = client.retrieve_instance_rendered(*uids, media_types=("image/jpeg",), params={"viewport": "40,40"})
    assert Image.open(io.BytesIO(thumbnail)).size == (40, 32)  # aspect ratio kept inside the viewport
    flipped = client.retrieve_instance_frames_rendered(*uids, frame_numbers=[1], media_types=("image/png",),
                                                       params={"viewport": "80,64,80,0,-80,64"})
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(flipped))), rendered[:, ::-1])

    path = _instance_path(web, _dataset(instance))
    bad = requests.get(f"{path}/rendered", params={"viewport": "0,10"}, timeout=10)
    assert bad.status_code == 400 and "viewport" in bad.json()["error"]["message"]
    outside = requests.get(f"{path}/rendered", params={"viewport": "10,10,500,0,20,20"}, timeout=10)
    assert outside.status_code == 400 and "outside the 80x64 image" in outside.json()["error"]["message"]
    assert requests.get(f"{path}/frames/2/rendered", timeout=10).status_code == 404


def _stretched(frame: np.ndarray) -> np.ndarray:
    """Without a VOI window a frame renders from its min/max to 0..255."""
    values = frame.astype(float)
    return np.rint((values - values.min()) * 255 / (values.max() - values.min())).astype(np.uint8)


def test_wado_rendered_frames_of_a_multiframe_instance_and_no_pixel_data(web):
    from PIL import Image

    multiframe = _store_file(web, _gray8(frames=3))
    path = _instance_path(web, multiframe)
    one = requests.get(f"{path}/frames/2/rendered", headers={"Accept": "image/png"}, timeout=10)
    assert one.headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(one.content))),
                                  _stretched(multiframe.pixel_array[1]))
    several = requests.get(f"{path}/frames/3,1/rendered", headers={"Accept": "image/png"}, timeout=10)
    assert several.headers["Content-Type"].startswith('multipart/related; type="image/png"')
    instance = requests.get(f"{path}/rendered", headers={"Accept": "image/png"}, timeout=10)  # its first frame
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(instance.content))),
                                  _stretched(multiframe.pixel_array[0]))

    plan = _store_file(web, _corpus_file("rtplan.dcm").read_bytes())
    no_pixels = requests.get(f"{_instance_path(web, plan)}/rendered", timeout=10)
    assert no_pixels.status_code == 400 and "no pixel data" in no_pixels.json()["error"]["message"]


def test_wado_bulkdata_single_part_and_encapsulated_pixel_data_as_stored(web):
    rle = _store_file(web, _corpus_file("SC_rgb_rle_2frame.dcm").read_bytes())
    path = f"{_instance_path(web, rle)}/bulkdata/7FE00010"
    single = requests.get(path, headers={"Accept": "application/octet-stream; transfer-syntax=*"}, timeout=10)
    assert single.headers["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.5"
    assert single.content == rle.PixelData  # the encapsulated value, as stored
    decoded = requests.get(path, headers={
        "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'},
        timeout=10)
    assert decoded.status_code == 406 and "frames" in decoded.json()["error"]["message"]


def test_wado_bit_packed_frames_start_on_a_byte_as_exports_cut_them(client, web):
    # 3 frames of 5x3 1-bit pixels: frames 2 and 3 start inside a byte in the stored Pixel Data.
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.PatientID, ds.Modality = "SYNTH-SEG", "SEG"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 5, 3, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    masks = np.random.default_rng(5).integers(0, 2, (3, 5, 3), dtype=np.uint8)
    ds.PixelData = pack_bits(masks)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    _store_file(web, out.getvalue())
    frames = client.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                                             frame_numbers=[2, 3, 1])
    assert frames == [pack_bits(masks[1]), pack_bits(masks[2]), pack_bits(masks[0])]


def test_concurrent_jpeg_2000_retrievals_do_not_crash_the_emulator(emulator, client, web):
    # The HTTP server answers on threads: JPEG 2000 transcodes at once crashed the process before issue 17.
    instances = [synthetic_instance(seed=40 + n, rows=256, columns=256) for n in range(4)]
    client.store_instances([_dataset(i) for i in instances])
    urls = [f"{web}/studies/{i.study_uid}/series/{i.series_uid}/instances/{i.sop_uid}" for i in instances] * 6

    def retrieve(url: str) -> str:
        answer = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90"},
                              timeout=60)
        return pydicom.dcmread(io.BytesIO(answer.content)).file_meta.TransferSyntaxUID

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(retrieve, urls)) == {"1.2.840.10008.1.2.4.90"}
    assert requests.get(f"{emulator.url}/_emulator/health", timeout=10).json()["status"] == "ok"


def test_wado_frames_of_native_ybr_full_422_keep_the_subsampled_layout(client, web):
    # 100x100 YBR_FULL_422: 2 bytes per pixel as stored (the old WADO cutter asked for 3 and answered 400).
    data = _corpus_file("SC_ybr_full_422_uncompressed.dcm").read_bytes()
    ds = _store_file(web, data)
    frames = client.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                                             frame_numbers=[1])
    assert frames == [ds.PixelData[:100 * 100 * 2]]


def test_qido_pages_stitch_into_the_whole_listing_with_computed_attributes(client, studies) -> None:
    """A page is cut from the same ordered matches as the whole listing (the search stops at the page's end),
    and each result on a page still carries its entity's computed counts."""
    for search, level_tags in ((client.search_for_studies, ("0020000D", "00201208")),
                               (client.search_for_series, ("0020000E", "00201209")),
                               (client.search_for_instances, ("00080018", "00081190"))):
        whole = [[_value(r, tag) for tag in level_tags] for r in search()]
        assert len(whole) >= 3 and all(None not in row for row in whole)
        pages = [[_value(r, tag) for tag in level_tags] for offset in range(0, len(whole), 2)
                 for r in search(offset=offset, limit=2)]
        assert pages == whole, search.__name__
