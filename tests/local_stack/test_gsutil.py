"""The seed's `gsutil cp` against the local stack, verbatim: with the BOTO_CONFIG and
CLOUDSDK_PASS_CREDENTIALS_TO_GSUTIL=false that `local-stack up` prints, gsutil reaches fake-gcs-server over
https, and a DICOM file it copies into the upload bucket is imported by the pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicom_samples import synthetic_instance
from local_stack.pubsub_emulator import launcher_path
from local_stack.stack import UPLOAD_BUCKET, LocalStack
from tests.local_stack.test_stack import stored, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(launcher_path() is None, reason="the Pub/Sub emulator is not installed"),
              pytest.mark.skipif(shutil.which("gsutil") is None, reason="gsutil is not installed")]

# The Indonesian seed, "Membuat file filter secara manual", step 2.
SEED_GSUTIL_CP = "gsutil cp my-local-folder/archive-filters.txt gs://my-bucket/my-directory"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as running:
        yield running


def run(command: str, stack: LocalStack, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "CLOUDSDK_CONFIG": str(cwd / "gcloud-config"),
           **stack.env()}
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done


def test_the_seeds_gsutil_cp_runs_verbatim(stack, tmp_path):
    stack.storage_client().create_bucket("my-bucket")
    (tmp_path / "my-local-folder").mkdir()
    (tmp_path / "my-local-folder" / "archive-filters.txt").write_text("/studies/1.2.3\n")
    run(SEED_GSUTIL_CP, stack, tmp_path)
    blob = stack.storage_client().bucket("my-bucket").blob("my-directory")
    assert blob.download_as_bytes() == b"/studies/1.2.3\n"


def test_a_dicom_file_copied_with_gsutil_is_imported(stack, tmp_path):
    instance = synthetic_instance(seed=17)
    (tmp_path / "my-local-folder").mkdir()
    (tmp_path / "my-local-folder" / "one.dcm").write_bytes(instance.data)
    run(f"gsutil cp my-local-folder/one.dcm gs://{UPLOAD_BUCKET}/incoming/one.dcm", stack, tmp_path)
    wait_for(lambda: stored(stack, instance.study_uid) == 1, "the instance gsutil uploaded to be imported", 120)
