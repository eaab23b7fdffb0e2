"""The console over plain HTTP (a real server, the real emulators): CSRF, escaping, paging, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import requests

from dicom_samples import synthetic_instance
from tests.conftest import LOCATION, PROJECT

from .conftest import PAGE_SIZE, stow

pytestmark = pytest.mark.integration


def _token(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page carries no CSRF token"
    return match[1]


def _dataset_ids(healthcare) -> set[str]:
    listed = healthcare.projects().locations().datasets().list(
        parent=f"projects/{PROJECT}/locations/{LOCATION}").execute()
    return {d["name"].rsplit("/", 1)[-1] for d in listed.get("datasets", [])}


def test_state_changes_need_the_pages_token_and_origin(console, healthcare) -> None:
    token = _token(requests.get(f"{console.url}/datasets", timeout=30).text)

    forged = requests.post(f"{console.url}/datasets", data={"dataset_id": "forged-no-token"}, timeout=30,
                           allow_redirects=False)
    assert forged.status_code == 403
    assert "security token" in forged.text
    cross_site = requests.post(f"{console.url}/datasets", data={"dataset_id": "forged-cross-site", "csrf": token},
                               headers={"Origin": "https://evil.example"}, timeout=30, allow_redirects=False)
    assert cross_site.status_code == 403
    assert "another site" in cross_site.text
    wrong = requests.post(f"{console.url}/datasets", data={"dataset_id": "forged-wrong", "csrf": token[::-1]},
                          timeout=30, allow_redirects=False)
    assert wrong.status_code == 403
    assert not {"forged-no-token", "forged-cross-site", "forged-wrong"} & _dataset_ids(healthcare)

    made = requests.post(f"{console.url}/datasets", data={"dataset_id": "made-here", "csrf": token},
                         headers={"Origin": console.url}, timeout=30, allow_redirects=False)
    assert made.status_code == 303
    assert "made-here" in _dataset_ids(healthcare)


def test_dicom_values_are_escaped(console, emulator, new_store) -> None:
    store = new_store()
    name = '<script>alert("pn")</script>^<img src=x onerror=alert(1)>'
    instance = synthetic_instance(patient_name=name, patient_id="<b>XSS-1</b>")
    stow(emulator.url, store.name, instance.data)
    base = f"{console.url}/datasets/{store.dataset}/stores/{store.store}"
    pages = [requests.get(base, timeout=30).text,
             requests.get(f"{base}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/"
                          f"{instance.sop_uid}", timeout=30).text]
    for html in pages:
        assert "&lt;script&gt;alert(&#34;pn&#34;)&lt;/script&gt;" in html
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>XSS-1</b>" not in html


def test_a_store_pages_through_its_studies(console, emulator, new_store) -> None:
    store = new_store()
    uids = set()
    for i in range(2 * PAGE_SIZE + 3):
        instance = synthetic_instance(patient_id=f"PAGE-{i:03d}", rows=8, columns=8)
        stow(emulator.url, store.name, instance.data)
        uids.add(instance.study_uid)
    base = f"{console.url}/datasets/{store.dataset}/stores/{store.store}"
    seen: list[str] = []
    url: str | None = base
    pages = 0
    while url:
        html = requests.get(url, timeout=30).text
        on_page = re.findall(r'href="[^"]*/studies/([0-9.]+)"', html)
        assert len(on_page) == (PAGE_SIZE if pages < 2 else 3)
        seen += on_page
        pages += 1
        following = re.search(r'href="(\?[^"]*offset=\d+)" id="next-page"', html)
        url = base + following[1].replace("&amp;", "&") if following else None
    assert pages == 3
    assert sorted(seen) == sorted(uids)

    search = requests.get(base, params={"patient_id": "PAGE-007"}, timeout=30).text
    assert len(re.findall(r'href="[^"]*/studies/([0-9.]+)"', search)) == 1


def test_errors_are_one_readable_line(console) -> None:
    page = requests.get(f"{console.url}/datasets", timeout=30).text
    token = _token(page)
    bad_source = requests.post(f"{console.url}/datasets/nope/stores/nope/import",
                               data={"uri": "http://not-gcs/x.dcm", "csrf": token}, timeout=30)
    assert bad_source.status_code == 400
    assert "expected gs://BUCKET/OBJECT" in bad_source.text
    missing = requests.get(f"{console.url}/datasets/no-such-dataset/stores/no-such-store", timeout=30)
    assert missing.status_code == 400
    error = re.search(r'<p class="error" role="alert">(.*?)</p>', missing.text, re.S)
    assert error and "HTTP 404" in error[1] and "\n" not in error[1].strip()
    assert "Traceback" not in missing.text
    bad_sql = requests.get(f"{console.url}/query", params={"sql": "SELEC nonsense"}, timeout=30)
    assert bad_sql.status_code == 400 and "the query failed" in bad_sql.text and "Traceback" not in bad_sql.text


def test_thumbnails_and_frames_are_the_stores_rendering(console, emulator, new_store) -> None:
    from io import BytesIO

    from PIL import Image

    store = new_store()
    instance = synthetic_instance(rows=300, columns=200)
    stow(emulator.url, store.name, instance.data)
    base = f"{console.url}/datasets/{store.dataset}/stores/{store.store}/studies/{instance.study_uid}"
    for url in (f"{base}/thumbnail", f"{base}/series/{instance.series_uid}/thumbnail",
                f"{base}/series/{instance.series_uid}/instances/{instance.sop_uid}/rendered"):
        thumbnail = requests.get(url, timeout=30)
        assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
        image = Image.open(BytesIO(thumbnail.content))
        assert image.format == "JPEG" and max(image.size) == 128  # viewport=128,128 keeps the aspect ratio
    frame = requests.get(f"{base}/series/{instance.series_uid}/instances/{instance.sop_uid}/rendered",
                         params={"frame": "1", "viewport": "512,512"}, timeout=30)
    assert frame.headers["Content-Type"] == "image/jpeg"
    width, height = Image.open(BytesIO(frame.content)).size
    assert max(width, height) == 512 and abs(width / height - 200 / 300) < 0.01  # fitted, aspect kept


def test_when_the_store_will_not_render_the_thumbnail_is_a_placeholder_saying_why(console, emulator,
                                                                                   new_store) -> None:
    store = new_store()
    instance = synthetic_instance(rows=32, columns=32)
    stow(emulator.url, store.name, instance.data)
    url = (f"{console.url}/datasets/{store.dataset}/stores/{store.store}/studies/{instance.study_uid}/series/"
           f"{instance.series_uid}/instances/{instance.sop_uid}/rendered")
    refused = requests.get(url, params={"frame": "7"}, timeout=30)  # a single-frame instance has no frame 7
    assert refused.status_code == 200 and refused.headers["Content-Type"] == "image/svg+xml"
    assert refused.headers["X-Thumbnail"] == "placeholder"
    assert refused.headers["X-Thumbnail-Reason"].startswith("HTTP 4")
    empty = requests.get(url.rsplit("/series/", 1)[0].replace(instance.study_uid, "1.2.3.4") + "/thumbnail",
                         timeout=30)
    assert empty.headers["X-Thumbnail"] == "placeholder" and empty.headers["X-Thumbnail-Reason"] == "no instances"


def test_the_cli_serves_the_console(emulator, tmp_path) -> None:
    from console.server import free_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cli", "--endpoint", emulator.url, "console", "--project",
                                PROJECT, "--port", str(port), "--run-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/datasets", timeout=5)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, "the console did not start"
                time.sleep(0.2)
        assert response.status_code == 200
        assert "Datasets" in response.text and "local stack" in response.text
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}/" in output


def test_the_consoles_log_names_routes_not_patients(console, emulator, new_store, caplog) -> None:
    store = new_store()
    instance = synthetic_instance(patient_id="PHI-4711", patient_name="Secret^Person", rows=8, columns=8)
    stow(emulator.url, store.name, instance.data)
    base = f"{console.url}/datasets/{store.dataset}/stores/{store.store}"
    with caplog.at_level("INFO", logger="console"):
        assert "Secret, Person" in requests.get(base, params={"patient_id": "PHI-4711"}, timeout=30).text
        requests.get(f"{base}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/"
                     f"{instance.sop_uid}", timeout=30)
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "console")
    assert "GET studies 200" in logged and "GET instance 200" in logged
    assert "PHI-4711" not in logged and "Secret" not in logged and instance.study_uid not in logged


def test_a_store_that_does_not_answer_is_one_line_naming_it() -> None:
    from console.server import ConsoleServer, free_port
    from console.settings import Settings

    nobody = f"http://127.0.0.1:{free_port()}"  # a free port: nothing listens there
    with ConsoleServer(Settings(project=PROJECT, location=LOCATION, endpoint=nobody)) as console:
        response = requests.get(f"{console.url}/datasets", timeout=30)
    assert response.status_code == 502
    error = re.search(r'<p class="error" role="alert">(.*?)</p>', response.text, re.S)
    assert error and error[1] == f"datasets.list: cannot reach {nobody} (ConnectionError); is it running?"


def test_google_cloud_without_credentials_says_how_to_get_them(tmp_path, monkeypatch) -> None:
    from console.server import ConsoleServer
    from console.settings import resolve

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with ConsoleServer(resolve(project="some-project", run_dir=tmp_path)) as console:
        response = requests.get(f"{console.url}/datasets", timeout=30)
    assert response.status_code == 400
    assert "no Google Cloud credentials" in response.text and "gcloud auth application-default login" in response.text
    assert "Google Cloud · some-project" in response.text
