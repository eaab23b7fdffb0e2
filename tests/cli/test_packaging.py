"""The project installs as a package whose `dicom-pipeline` console script works outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "console", "dicom_pipeline", "dicom_samples", "local_bigquery", "local_stack",
            "healthcare_emulator")


@pytest.mark.slow
def test_the_built_wheel_installs_a_working_console_script(tmp_path) -> None:
    # Build from a copy: a build in the shared work tree would leave build/ and *.egg-info behind.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, capture_output=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("dicom_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}
        entry_points = next(archive.read(n).decode() for n in archive.namelist() if n.endswith("entry_points.txt"))
    assert tops == set(PACKAGES)  # not tests/, handlers/ or a top-level main.py
    assert "dicom-pipeline = cli.main:main" in entry_points
    assert {"console/templates/studies.html", "console/static/htmx.min.js"} <= set(archive.namelist())

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=120)
    # The dependencies come from this environment; the project's own code only from the installed copy.
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([str(site / "bin" / "dicom-pipeline"), "query", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout
    where = subprocess.run([sys.executable, "-c", "import cli; print(cli.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert where.startswith(str(site))
