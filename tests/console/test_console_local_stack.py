"""The console over the whole local stack, as a user runs it: `local-stack up`, then the console from its state
file. An upload to the landing bucket goes through the functions and shows up on the console's pages."""

from __future__ import annotations

import time

import pytest
import requests
from selenium.webdriver.support.ui import WebDriverWait

from cli import main
from console.server import ConsoleServer
from console.settings import resolve
from dicom_samples import synthetic_instance

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]


def _until(check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the pipeline did not get there in time"
        time.sleep(0.5)


def test_the_console_follows_the_local_stack(tmp_path, capsys, monkeypatch, browser, screenshot) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    for name in ("HEALTHCARE_API_ENDPOINT", "STORAGE_EMULATOR_HOST", "HEALTHCARE_EMULATOR_DATA_DIR",
                 "STAGING_BUCKET", "GOOGLE_CLOUD_PROJECT", "DICOM_STORE", "BIGQUERY_TABLE"):
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / "stack"
    assert main(["local-stack", "up", "--run-dir", str(run_dir)]) == 0
    try:
        assert f"dicom-pipeline console --run-dir {run_dir}" in capsys.readouterr().out
        settings = resolve(run_dir=run_dir)
        with ConsoleServer(settings) as console:
            home = requests.get(console.url, timeout=30)
            assert home.status_code == 200 and home.url.endswith("/datasets/local-dataset/stores/local-store")

            gcs = storage.Client(project=settings.project, credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": settings.storage_emulator_host})
            landing = gcs.bucket("dicom-landing")
            landing.blob("console/good.dcm").upload_from_string(
                synthetic_instance(patient_id="CONSOLE-1", rows=8, columns=8).data)
            landing.blob("console/broken.dcm").upload_from_string(b"not DICOM at all")

            _until(lambda: "CONSOLE-1" in requests.get(console.url, timeout=30).text)
            _until(lambda: "console/broken.dcm" in requests.get(f"{console.url}/dead-letters", timeout=30).text)
            examples = requests.get(f"{console.url}/query", timeout=30).text
            assert "local-project.dicom_metadata.instances" in examples  # the seed's queries on the stack's table
            sql = ("SELECT PatientID FROM `local-project.dicom_metadata.instances` WHERE PatientID = 'CONSOLE-1'")
            _until(lambda: "1 row(s)" in requests.get(f"{console.url}/query", params={"sql": sql}, timeout=30).text)
            pipeline = requests.get(f"{console.url}/pipeline", timeout=30).text
            assert pipeline.count("NOT ANSWERING") == 0 and pipeline.count(">answers<") == 6
            # A burst through the whole pipeline while the Pipeline page samples the store every second.
            browser.get(f"{console.url}/pipeline")
            WebDriverWait(browser, 30).until(lambda b: b.find_elements("css selector", "#instance-count"))
            time.sleep(3)  # a few quiet samples before the burst
            for i in range(60):
                landing.blob(f"burst/{i}.dcm").upload_from_string(
                    synthetic_instance(patient_id=f"BURST-{i}", rows=8, columns=8).data)
            WebDriverWait(browser, 90).until(
                lambda b: b.find_element("css selector", "#instance-count").text == "61")
            time.sleep(3)  # samples after the burst, so the chart comes down again
            browser.refresh()  # the samples are the server's: the reloaded page lists the burst's operations too
            WebDriverWait(browser, 30).until(lambda b: b.find_elements("css selector", "svg.chart polyline"))
            screenshot("20-local-stack-pipeline")
            browser.get(f"{console.url}/dead-letters")
            screenshot("21-local-stack-dead-letters")
            # Requeue: the core rewrites the object onto itself, the import function runs again, and the file,
            # still broken, comes back as a new dead letter.
            browser.find_element("css selector", "#letters button.requeue").click()
            WebDriverWait(browser, 30).until(lambda b: b.find_elements("id", "requeued"))
            assert "rewrote gs://dicom-landing/console/broken.dcm" in browser.find_element("id", "requeued").text
            _until(lambda: "console/broken.dcm" in requests.get(f"{console.url}/dead-letters", timeout=30).text)
    finally:
        assert main(["local-stack", "down", "--run-dir", str(run_dir)]) == 0
