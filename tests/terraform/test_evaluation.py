"""Terraform itself evaluates our provider-independent expressions, and the function source it selects runs.

terraform/settings.tf holds every expression that depends only on the variables and the files (fileset,
names, lifecycle rules, alert definitions) and terraform/variables.tf every validation. Copied with the
function code into a temporary tree, they form a module without providers that terraform can plan, test and
apply offline: `terraform test` runs tests/terraform/evaluation/*.tftest.hcl (validations and edge cases),
`terraform apply` gives every local's value. The archive is then built from exactly the files terraform
selected, installed into a clean virtualenv from its requirements.txt alone, served by functions-framework
(as an HTTP function, the way a gen2 function without an Eventarc trigger is deployed) and sent the bodies
Pub/Sub pushes in the deployment: a Cloud Storage finalize notification and a DICOM store notification.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from local_stack.processes import ManagedServer, start, wait_until_ready
from local_stack.stack import http_answers
from tests.terraform.hcl import ROOT, TF, parse_files

TERRAFORM = shutil.which("terraform")
pytestmark = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")
EVALUATION = ROOT / "tests" / "terraform" / "evaluation"
VENVS = ROOT / ".cache" / "function-venv"
PROJECT = "dicom-test-project"


def terraform(module: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    return subprocess.run([TERRAFORM or "terraform", *args, "-no-color"], cwd=module, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def settings_locals() -> list[str]:
    return [name for block in parse_files([TF / "settings.tf"])["locals"] for name in block]


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tmp/terraform/{settings.tf, variables.tf, outputs of every local} beside a copy of the function code."""
    tree = tmp_path_factory.mktemp("evaluation")
    for item in ("main.py", "requirements.txt", "handlers", "dicom_pipeline", "tests", "README.md"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, tree / item, ignore=shutil.ignore_patterns(".pytest_cache"))
        else:
            shutil.copy2(source, tree / item)
    (tree / "dicom_pipeline" / "notes.txt").write_text("not imported: must not be deployed\n")
    module = tree / "terraform"
    module.mkdir()
    for name in ("settings.tf", "variables.tf"):
        shutil.copy2(TF / name, module / name)
    outputs = "".join(f'output "{name}" {{\n  value = local.{name}\n}}\n' for name in settings_locals())
    (module / "outputs.tf").write_text(outputs)
    shutil.copytree(EVALUATION, module / "tests")
    init = terraform(module, "init", "-input=false", "-backend=false")
    assert init.returncode == 0, init.stderr + init.stdout
    return module


@pytest.fixture(scope="module")
def evaluated(module: Path) -> dict[str, Any]:
    """Every local of settings.tf as terraform computes it with the default variables."""
    applied = terraform(module, "apply", "-auto-approve", "-input=false", f"-var=project_id={PROJECT}")
    assert applied.returncode == 0, applied.stderr + applied.stdout
    shown = terraform(module, "output", "-json")
    return {name: value["value"] for name, value in json.loads(shown.stdout).items()}


def test_settings_hold_no_resource_or_provider() -> None:
    parsed = parse_files([TF / "settings.tf"])
    assert set(parsed) == {"locals"}


def test_terraform_test_runs_every_case(module: Path) -> None:
    """Validations and edge cases (defects 4, 8, 9): tests/terraform/evaluation/settings.tftest.hcl."""
    result = terraform(module, "test")
    runs = sum(text.count('\nrun "') for text in (p.read_text() for p in EVALUATION.glob("*.tftest.hcl")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Success! {runs} passed, 0 failed." in result.stdout, result.stdout


def test_every_local_evaluates(evaluated: dict[str, Any]) -> None:
    assert set(evaluated) == set(settings_locals())


def test_fileset_selects_exactly_what_the_functions_import(evaluated: dict[str, Any]) -> None:
    """Defect 1: terraform rejected the old single pattern with "/" inside {…}; now it selects the files."""
    tracked = subprocess.run(["git", "ls-files", "main.py", "requirements.txt", "handlers", "dicom_pipeline"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    expected = sorted(f for f in tracked if f.endswith(".py") or f == "requirements.txt")
    assert evaluated["function_source_files"] == expected


def test_the_old_brace_pattern_is_what_terraform_refuses(module: Path) -> None:
    """The defect itself, reproduced: so the test above is known to guard against it."""
    probe = module.parent / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "main.tf").write_text('output "files" {\n  value = fileset("${path.module}/..", '
                                   '"{main.py,requirements.txt,handlers/**/*.py,dicom_pipeline/**/*.py}")\n}\n')
    result = terraform(probe, "apply", "-auto-approve", "-input=false")
    assert result.returncode != 0 and "syntax error in pattern" in result.stderr


def test_every_bucket_name_and_identity_is_valid(evaluated: dict[str, Any]) -> None:
    assert all(len(b["name"]) <= 63 for b in evaluated["buckets"].values())
    assert set(evaluated["buckets"]) == {"landing", "staging", "source"}
    staging = evaluated["buckets"]["staging"]
    assert (staging["versioning"], staging["soft_delete_seconds"]) == (False, 0)
    assert evaluated["log_view_name"] == (f"projects/{PROJECT}/locations/global/buckets/_Default/views/"
                                          "dicom-healthcare-dicom")


# --- The archive terraform would upload, in a clean virtualenv, under functions-framework. ---

def _archive(files: list[str], directory: Path) -> Path:
    """The zip archive_file builds: exactly the selected files, at their paths relative to the repo."""
    path = directory / "function-source.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in files:
            archive.write(ROOT / name, name)
    return path


def _clean_venv() -> Path:
    """A virtualenv with requirements.txt installed and nothing else; cached by the file's content."""
    requirements = (ROOT / "requirements.txt").read_bytes()
    venv = VENVS / hashlib.sha256(requirements).hexdigest()[:16]
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(ROOT / "requirements.txt")], check=True, timeout=900)
        (venv / ".complete").touch()
    return venv


class ArchivedFunction(ManagedServer):
    """One function from the extracted archive, served by the clean venv's functions-framework."""

    name = "archived-function"

    def __init__(self, venv: Path, source: Path, target: str, env: dict[str, str]):
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.venv, self.source, self.target, self.env = venv, source, target, env

    def command(self) -> list[str]:
        # As deployed: an HTTP function (no Eventarc trigger); the handler's decorator makes it a CloudEvent one.
        return [str(self.venv / "bin" / "functions-framework"), "--source", str(self.source / "main.py"),
                "--target", self.target, "--signature-type", "http", "--host", "127.0.0.1", "--port", str(self.port)]

    def environment(self) -> dict[str, str]:
        # Nothing of the repository or of the test's virtualenv is importable: only the archive and the venv.
        return {**self.env, "PYTHONPATH": "", "PYTHONSAFEPATH": "1", "VIRTUAL_ENV": str(self.venv)}

    def start(self) -> ArchivedFunction:
        self._process = start(self.command(), self.log, self.environment())
        wait_until_ready(http_answers(self.url + "/"), self._process, self.target, self.log, 60)
        return self


def _push(url: str, data: bytes, attributes: dict[str, str] | None = None) -> int:
    """POST the body a Pub/Sub push subscription (wrapped, as terraform configures it) sends."""
    import requests

    message: dict[str, Any] = {"data": base64.b64encode(data).decode(), "messageId": str(uuid.uuid4().int)[:16],
                               "publishTime": "2026-01-01T00:00:00.000Z"}
    if attributes:
        message["attributes"] = attributes
    body = {"message": message, "subscription": f"projects/{PROJECT}/subscriptions/dicom-trigger"}
    return requests.post(url + "/", json=body, timeout=120).status_code


@pytest.fixture(scope="module")
def archived_source(evaluated: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("archive")
    with zipfile.ZipFile(_archive(evaluated["function_source_files"], directory)) as archive:
        archive.extractall(directory / "source")
    return directory / "source"


@pytest.mark.integration
@pytest.mark.slow
def test_archive_serves_both_functions_from_requirements_alone(archived_source, emulator, fake_gcs, new_store,
                                                               new_bucket, healthcare) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    from local_bigquery.query import run_query
    from local_bigquery.warehouse import create_dataset

    venv = _clean_venv()
    store = new_store()
    landing, staging = new_bucket(), new_bucket()
    dataset_id = f"archive_{uuid.uuid4().hex[:8]}"
    create_dataset(emulator.data_dir, "test-project", dataset_id)  # as Terraform does: exports never create it
    table = f"bq://test-project.{dataset_id}.instances"
    env = {"DICOM_STORE": store.name, "STAGING_BUCKET": staging.name, "BIGQUERY_TABLE": table,
           "HEALTHCARE_API_ENDPOINT": emulator.url, "STORAGE_EMULATOR_HOST": fake_gcs.url,
           "GOOGLE_CLOUD_PROJECT": "test-project", "OPERATION_WAIT_SECONDS": "60"}

    blob = landing.blob("incoming/ct.dcm")
    blob.upload_from_filename(get_testdata_file("CT_small.dcm"), content_type="application/dicom")
    blob.reload()
    # What the landing bucket's JSON_API_V1 notification carries: the object resource, and these attributes.
    notification = {"eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1", "bucketId": landing.name,
                    "objectId": blob.name, "objectGeneration": str(blob.generation)}
    with ArchivedFunction(venv, archived_source, "import_dicom_object", env) as importer:
        assert _push(importer.url, json.dumps(blob._properties).encode(), notification) == 200
    metrics = healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(
        name=store.name).execute()
    assert metrics.get("instanceCount") == "1"

    dataset_ = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    uids = [str(dataset_.StudyInstanceUID), str(dataset_.SeriesInstanceUID), str(dataset_.SOPInstanceUID)]
    path = f"{store.name}/dicomWeb/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
    with ArchivedFunction(venv, archived_source, "export_dicom_metadata", env) as exporter:
        assert _push(exporter.url, path.encode()) == 200
    project, dataset, name = table.removeprefix("bq://").split(".")
    _, rows = run_query(emulator.data_dir, f"SELECT SOPInstanceUID FROM `{project}.{dataset}.{name}`")
    assert [tuple(r) for r in rows] == [(uids[2],)]
