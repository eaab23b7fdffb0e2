"""`storage-class`: dicomStores.setBlobStorageSettings for a filter's instances, against the emulator."""

from __future__ import annotations

import json

import pytest

from cli import main
from tests.cli.conftest import storage_class, upload_studies

pytestmark = pytest.mark.integration


def test_only_the_filters_instances_change_class(cli_env, healthcare, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    instances = upload_studies(bucket, studies=2, series=1, instances=2)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    target = instances[0].study_uid
    bucket.blob("old.txt").upload_from_string(f"/studies/{target}\n".encode())
    capsys.readouterr()

    code = main(["storage-class", store.name, "ARCHIVE", "--filter-config-gcs-uri", f"gs://{bucket.name}/old.txt",
                 "--format", "json"])

    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["done"] is True and (out["success"], out["failure"]) == (2, 0)
    classes = {i.sop_uid: storage_class(healthcare, store.name, i) for i in instances}
    assert classes == {i.sop_uid: "ARCHIVE" if i.study_uid == target else "STANDARD" for i in instances}


def test_whole_store_async_then_wait(cli_env, healthcare, new_store, new_bucket, capsys) -> None:
    store, bucket = new_store(), new_bucket()
    instances = upload_studies(bucket, instances=2)
    assert main(["import", store.name, f"gs://{bucket.name}/in/*.dcm"]) == 0
    capsys.readouterr()

    assert main(["storage-class", store.name, "NEARLINE", "--whole-store", "--async"]) == 0
    name = capsys.readouterr().out.strip()
    assert main(["operations", "wait", name]) == 0
    assert "2 succeeded, 0 failed" in capsys.readouterr().out
    assert {storage_class(healthcare, store.name, i) for i in instances} == {"NEARLINE"}


@pytest.mark.parametrize("extra", [[], ["--whole-store", "--filter-config-gcs-uri", "gs://b/f.txt"],
                                   ["--filter-config-gcs-uri", "not-a-uri"]])
def test_the_scope_must_be_explicit(cli_env, new_store, extra, capsys) -> None:
    assert main(["storage-class", new_store().name, "COLDLINE", *extra]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_an_unknown_class_is_a_usage_error(cli_env, capsys) -> None:
    assert main(["storage-class", "projects/p/locations/l/datasets/d/dicomStores/s", "GLACIER", "--whole-store"]) == 2
    assert "invalid choice" in capsys.readouterr().err
