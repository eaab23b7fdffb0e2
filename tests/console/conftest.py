"""The console on a free loopback port over the session's emulators, and headless Chromium from Debian."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from console.server import ConsoleServer
from console.settings import Settings
from tests.conftest import LOCATION, PROJECT

PIPELINE_STORE = f"projects/{PROJECT}/locations/{LOCATION}/datasets/clinic/dicomStores/pipeline"  # browser tests
PAGE_SIZE = 10  # small pages: paging shows with a few dozen studies
RESULTS = Path(__file__).resolve().parents[1] / "results" / "console"  # screenshots, next to the test results
# Chromium as the brief's tests run it: no first-run, sync, component or background traffic, a fresh profile.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")


@pytest.fixture(scope="session")
def staging_bucket(gcs_client) -> str:
    return str(gcs_client.create_bucket(f"console-staging-{uuid.uuid4().hex[:8]}").name)


@pytest.fixture(scope="session")
def console_settings(emulator, fake_gcs, staging_bucket: str) -> Settings:
    return Settings(project=PROJECT, location=LOCATION, endpoint=emulator.url, warehouse_dir=str(emulator.data_dir),
                    staging_bucket=staging_bucket, storage_emulator_host=fake_gcs.url, store=PIPELINE_STORE,
                    components={"healthcare-emulator": emulator.url, "fake-gcs-server": fake_gcs.url})


@pytest.fixture(scope="session")
def console(console_settings: Settings) -> Iterator[ConsoleServer]:
    with ConsoleServer(console_settings, page_size=PAGE_SIZE) as server:
        yield server


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromium-driver are not installed (scripts/install-system-deps.sh installs them)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot(browser) -> Callable[[str], Path]:
    """Save the whole page (not only the window) as tests/results/console/NAME.png."""
    RESULTS.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> Path:
        browser.execute_script("window.scrollTo(0, 0)")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, max(720, min(int(height) + 20, 2400)))
        path = RESULTS / f"{name}.png"
        browser.save_screenshot(str(path))
        browser.set_window_size(1280, 900)
        return path

    return shoot


def stow(emulator_url: str, store_name: str, data: bytes) -> None:
    response = requests.post(f"{emulator_url}/v1/{store_name}/dicomWeb/studies", data=data,
                             headers={"Content-Type": "application/dicom"}, timeout=30)
    response.raise_for_status()
