"""The seed's Console flows end to end in headless Chromium against the emulators: import with a wildcard and a
storage class, the operation's progress, the studies with thumbnails, export to BigQuery and query the rows,
export to Cloud Storage as PNG, a failed import's per-file reasons. Screenshots go to tests/results/console/."""

from __future__ import annotations

import csv
import io
import time
import uuid
from pathlib import Path

import pytest
import requests

from dicom_pipeline.names import DicomStoreName
from dicom_samples import synthetic_instance
from tests.conftest import LOCATION, PROJECT, StoreRef

from .conftest import PIPELINE_STORE, stow

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

CORPUS = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtdose.dcm")  # real images; rtdose has 15 frames


def _wait_for(browser, css: str, text: str | None = None, timeout: float = 60):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, timeout)
    try:
        if text is None:
            return wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))
        wait.until(expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
    except TimeoutException:
        page = browser.find_element(By.TAG_NAME, "main").text[:800]
        raise AssertionError(f"no {css} {text or ''} after {timeout} s at {browser.current_url}: {page}") from None
    return browser.find_element(By.CSS_SELECTOR, css)


def _all(browser, css: str) -> list:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, css))


def _images_loaded(browser) -> bool:
    return bool(browser.execute_script(
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"))


@pytest.fixture(scope="module")
def imported(console, browser, screenshot, healthcare, gcs_client):
    """The seed's import: a wildcard source and a storage class chosen under Advanced options."""
    from pydicom.data import get_testdata_file
    from selenium.webdriver.support.ui import Select

    name = DicomStoreName.from_string(PIPELINE_STORE)
    store = StoreRef(name.project, name.location, name.dataset, name.store)
    datasets = healthcare.projects().locations().datasets()
    if store.dataset not in str(datasets.list(parent=f"projects/{PROJECT}/locations/{LOCATION}").execute()):
        datasets.create(parent=f"projects/{PROJECT}/locations/{LOCATION}", datasetId=store.dataset, body={}).execute()
    datasets.dicomStores().create(parent=store.dataset_name, dicomStoreId=store.store, body={}).execute()
    bucket = gcs_client.create_bucket(f"uploads-{uuid.uuid4().hex[:8]}")
    for i, name in enumerate(CORPUS):
        bucket.blob(f"incoming/day{i % 2}/{name}").upload_from_filename(get_testdata_file(name))
    bucket.blob("incoming/notes.txt").upload_from_string(b"not matched by **.dcm")
    base = f"{console.url}/datasets/{store.dataset}/stores/{store.store}"

    browser.get(f"{base}/import")
    browser.find_element("id", "uri").send_keys(f"gs://{bucket.name}/incoming/**.dcm")
    browser.find_element("css selector", "details summary").click()
    Select(browser.find_element("id", "storage_class")).select_by_visible_text("NEARLINE")
    screenshot("01-import-form")
    browser.find_element("id", "start-import").click()
    _wait_for(browser, "#op-state", "succeeded")
    screenshot("02-import-operation")
    return store, bucket, base


def test_import_with_a_wildcard_and_a_storage_class(imported, browser, healthcare) -> None:
    store, _, _ = imported
    assert f"{len(CORPUS)} succeeded · 0 failed" in browser.find_element("id", "progress").text
    assert browser.find_element("css selector", ".bar").get_attribute("aria-valuenow") == "100"
    studies = healthcare.projects().locations().datasets().dicomStores()
    metrics = studies.getDICOMStoreMetrics(name=store.name).execute()
    assert metrics["instanceCount"] == str(len(CORPUS))


def test_the_studies_show_with_thumbnails(imported, browser, screenshot) -> None:
    browser.find_element("id", "view-studies").click()
    _wait_for(browser, ".tile.study")
    tiles = _all(browser, ".tile.study")
    assert len(tiles) == len(CORPUS)
    assert "CompressedSamples, CT1" in browser.page_source
    thumbnails = [t.find_element("css selector", "img.thumb").get_attribute("src") for t in tiles]
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(_images_loaded)
    screenshot("03-studies")
    # Every thumbnail is the store's JPEG rendering (DICOMweb rendered), none the placeholder.
    assert {requests.get(src, timeout=30).headers["Content-Type"] for src in thumbnails} == {"image/jpeg"}
    assert browser.execute_script(
        "return [...document.querySelectorAll('img.thumb')].map(i => Math.max(i.naturalWidth, i.naturalHeight))"
    ) == [128] * len(CORPUS)  # viewport=128,128: the longer side


def test_an_instance_shows_its_metadata_tree_and_frames(imported, browser, screenshot) -> None:
    _, _, base = imported
    browser.get(base + "?modality=RTDOSE")
    _wait_for(browser, ".tile.study").click()
    _wait_for(browser, ".tile").click()
    screenshot("04-instances")
    _wait_for(browser, ".tile").click()
    _wait_for(browser, "ul.tree")
    assert "frame 1 of 15" in browser.page_source
    tree = browser.find_element("css selector", "ul.tree").text
    assert "PatientName" in tree and "Lastname^Firstname" in tree and "NumberOfFrames" in tree
    summaries = _all(browser, "ul.tree details summary")
    assert summaries, "rtdose.dcm has sequences: they show as expandable items"
    browser.execute_script("document.querySelector('ul.tree details').open = true")  # a click would scroll
    screenshot("04-instance-frames-and-metadata")
    summaries[1].click()
    assert summaries[1].find_element("xpath", "..").get_attribute("open") is not None
    browser.find_element("id", "next-frame").click()
    _wait_for(browser, ".viewer", "frame 2 of 15")
    second = browser.find_element("id", "frame").get_attribute("src")
    assert second.endswith("frame=2&viewport=512,512")
    assert requests.get(second, timeout=30).headers["Content-Type"] == "image/jpeg"  # the store's frame 2

    browser.get(base + "?modality=CT")  # a single-frame CT, for the picture of an instance page
    for _ in range(3):
        _wait_for(browser, ".tile").click()
    _wait_for(browser, "ul.tree")
    assert "1 frame" in browser.find_element("css selector", ".viewer").text
    screenshot("04-instance-ct")


def test_export_to_bigquery_with_write_truncate_then_query(imported, browser, screenshot, emulator) -> None:
    from local_bigquery.warehouse import create_dataset

    _, _, base = imported
    create_dataset(emulator.data_dir, PROJECT, "console_export")  # as `bq mk` does: exports need the dataset
    table = f"bq://{PROJECT}.console_export.instances_{uuid.uuid4().hex[:6]}"
    for _ in range(2):  # the second export truncates: the rows are the store's, once
        browser.get(f"{base}/export")
        browser.find_element("id", "to-bigquery").click()
        field = browser.find_element("id", "table")
        field.clear()
        field.send_keys(table)
        browser.find_element("id", "write-truncate").click()
        screenshot("05-export-bigquery-form")
        browser.find_element("id", "start-export").click()
        _wait_for(browser, "#op-state", "succeeded")
    browser.find_element("id", "query-table").click()
    _wait_for(browser, "#results")
    assert browser.find_element("id", "row-count").text == f"{len(CORPUS)} row(s)"
    csv_url = browser.find_element("id", "csv").get_attribute("href")
    rows = list(csv.DictReader(io.StringIO(requests.get(csv_url, timeout=30).text)))
    assert sorted(r["PatientID"] for r in rows) == ["1CT1", "4MR1", "8NM1", "id11111"]
    assert '"FamilyName": "CompressedSamples"' in next(r["PatientName"] for r in rows if r["PatientID"] == "1CT1")

    sql = browser.find_element("id", "sql")
    sql.clear()
    sql.send_keys("SELECT CONCAT('/dicomWeb/studies/', StudyInstanceUID, '/series/', SeriesInstanceUID,"
                  f" '/instances/', SOPInstanceUID) AS DICOMwebPath FROM `{table[5:]}` WHERE PatientID = '1CT1'")
    browser.find_element("id", "run-query").click()
    link = _wait_for(browser, "#results a")
    screenshot("06-query")
    link.click()  # a study's DICOMweb path links to its page in the console
    _wait_for(browser, "ul.tree")
    assert "CompressedSamples^CT1" in browser.find_element("css selector", "ul.tree").text


def test_export_to_cloud_storage_as_png(imported, browser, screenshot, new_bucket) -> None:
    from selenium.webdriver.support.ui import Select

    _, _, base = imported
    bucket = new_bucket()
    browser.get(f"{base}/export")
    browser.find_element("id", "to-gcs").click()
    browser.find_element("id", "prefix").send_keys(f"gs://{bucket.name}/png")
    Select(browser.find_element("id", "file_type")).select_by_value("png")
    screenshot("07-export-gcs-form")
    browser.find_element("id", "start-export").click()
    _wait_for(browser, "#op-state", "succeeded")
    browser.find_element("id", "view-objects").click()
    _wait_for(browser, "#objects")
    names = [cell.text for cell in _all(browser, "#objects td code")]
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(_images_loaded)
    screenshot("08-exported-objects")
    previews = [img.get_attribute("src") for img in _all(browser, "#objects img.mini")]
    assert len(previews) == len(names)
    first = requests.get(previews[0], timeout=30)  # the exported PNG itself, as the store rendered it
    assert first.headers["Content-Type"] == "image/png" and first.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert names and all(n.startswith("png/") and n.endswith(".png") for n in names)
    assert len(names) == len(CORPUS) - 1 + 15  # one PNG per frame: rtdose's 15 frames get one each


def test_a_failed_import_shows_each_files_reason(console, browser, screenshot, new_store, new_bucket) -> None:
    store, bucket = new_store(), new_bucket()
    bucket.blob("batch/good.dcm").upload_from_string(synthetic_instance(rows=8, columns=8).data)
    bucket.blob("batch/broken.dcm").upload_from_string(b"this is not a DICOM file")
    bucket.blob("batch/empty.dcm").upload_from_string(b"")
    browser.get(f"{console.url}/datasets/{store.dataset}/stores/{store.store}/import")
    browser.find_element("id", "uri").send_keys(f"gs://{bucket.name}/batch/*.dcm")
    browser.find_element("id", "start-import").click()
    _wait_for(browser, "#op-state", "failed")
    failures = _wait_for(browser, "#failures").text
    screenshot("09-failed-import")
    assert "1 succeeded · 2 failed" in browser.find_element("id", "progress").text
    assert "broken.dcm" in failures and "empty.dcm" in failures and "good.dcm" not in failures
    assert len(_all(browser, "#failures tbody tr")) == 2


def test_a_patient_name_script_is_shown_not_run(console, browser, emulator, new_store) -> None:
    store = new_store()
    script = "<script>document.body.classList.add('pwned')</script>"  # no '=': it separates PN groups
    name = f"{script}^<i>x</i>"  # 62 characters: a PN group holds 64
    instance = synthetic_instance(patient_name=name, patient_id="XSS-2", rows=8, columns=8)
    stow(emulator.url, store.name, instance.data)
    browser.get(f"{console.url}/datasets/{store.dataset}/stores/{store.store}")
    tile = _wait_for(browser, ".tile.study")
    assert script in tile.text and "<i>x</i>" in tile.text
    browser.get(f"{console.url}/datasets/{store.dataset}/stores/{store.store}/studies/{instance.study_uid}/series/"
                f"{instance.series_uid}/instances/{instance.sop_uid}")
    _wait_for(browser, "ul.tree")
    assert script in browser.find_element("css selector", "ul.tree").text
    assert browser.execute_script("return document.body.classList.contains('pwned')") is False


def test_datasets_operations_dead_letters_and_pipeline_pages(console, console_settings, browser, screenshot,
                                                             imported, gcs_client, emulator) -> None:
    store, _, _ = imported
    record = {"reason": "dicomStores.import: operation failed (code 3): not a DICOM file", "kind": "import",
              "object": f"gs://uploads/incoming/{uuid.uuid4().hex[:6]}.dcm", "event_id": "e-1",
              "time": "2026-12-06T10:00:00Z"}
    import json

    gcs_client.bucket(console_settings.staging_bucket).blob(f"dead-letter/import/{uuid.uuid4().hex}.json") \
        .upload_from_string(json.dumps(record), content_type="application/json")

    browser.get(f"{console.url}/datasets")
    made = f"made-in-browser-{uuid.uuid4().hex[:4]}"
    browser.find_element("name", "dataset_id").send_keys(made)
    browser.find_element("xpath", "//button[text()='Create dataset']").click()
    _wait_for(browser, "main", made)
    screenshot("10-datasets")

    browser.get(f"{console.url}/operations?dataset={store.dataset_name}")
    _wait_for(browser, "table")
    assert len(_all(browser, "span.state.succeeded")) >= 3  # the import and the exports of this module
    screenshot("11-operations")

    browser.get(f"{console.url}/dead-letters")
    letters = _wait_for(browser, "#letters").text
    assert "not a DICOM file" in letters and record["object"] in letters
    screenshot("12-dead-letters")

    browser.get(f"{console.url}/pipeline")
    _wait_for(browser, "#components")
    assert browser.find_element("id", "components").text.count("answers") == 2
    before = int(_wait_for(browser, "#instance-count").text)
    for i in range(40):  # a small burst while the page samples the store every second
        stow(emulator.url, store.name, synthetic_instance(patient_id=f"BURST-{i}", rows=8, columns=8).data)
        time.sleep(0.05)
    _wait_for(browser, "#instance-count", str(before + 40), timeout=30)
    _wait_for(browser, "svg.chart polyline")
    screenshot("13-pipeline")


def test_screenshots_were_written() -> None:
    results = Path(__file__).resolve().parents[1] / "results" / "console"
    assert len(list(results.glob("*.png"))) >= 13
