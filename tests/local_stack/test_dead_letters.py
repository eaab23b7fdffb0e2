"""Dead letters through the whole local stack: the reason read from Cloud Logging, requeue through the real
triggers (a rewritten object's finalize event, a republished notification), and the CLI's one-line errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cli.main import main as cli
from dicom_pipeline import dead_letters
from dicom_pipeline.dead_letters import DeadLetterError, Where
from dicom_pipeline.names import DicomStoreName
from dicom_samples import synthetic_instance, vendor_corpus
from local_stack.pubsub_emulator import launcher_path
from local_stack.stack import NOTIFICATION_TOPIC, STAGING_BUCKET, UPLOAD_BUCKET, LocalStack

from .test_stack import rows_of, stored, upload, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(launcher_path() is None, reason="the Pub/Sub emulator is not installed")]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as running:
        yield running


@pytest.fixture
def where(stack: LocalStack) -> Where:
    return Where(STAGING_BUCKET, stack.gcs.url, stack.healthcare.url, f"http://{stack.pubsub.host}",
                 stack.names.project)


@pytest.fixture
def cli_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STAGING_BUCKET", STAGING_BUCKET)


def letters_for(where: Where, text: str, kind: str = "import") -> list[dead_letters.DeadLetter]:
    return [letter for letter in dead_letters.list_dead_letters(where, kind) if text in letter.subject]


def one_letter(where: Where, text: str, kind: str = "import") -> dead_letters.DeadLetter:
    wait_for(lambda: len(letters_for(where, text, kind)) == 1, f"one dead letter for {text}")
    (letter,) = letters_for(where, text, kind)
    return letter


def newest_rows(stack: LocalStack, sop_uid: str) -> list[int]:
    """`Rows` of the instance's rows in the deduplicating view the README documents (the newest per instance)."""
    from dicom_pipeline.exporter import dedup_query
    from dicom_pipeline.names import BigQueryTableUri
    from local_bigquery.query import run_query

    view = dedup_query(BigQueryTableUri.from_string(stack.names.table))
    _, rows = run_query(stack.healthcare.data_dir, f"SELECT `Rows` FROM ({view}) WHERE SOPInstanceUID = '{sop_uid}'")
    return [int(row[0]) for row in rows]


def delete_instance(stack: LocalStack, instance: Any) -> None:
    url = (f"{stack.healthcare.url}/v1/{stack.names.store_name}/dicomWeb/studies/{instance.study_uid}"
           f"/series/{instance.series_uid}/instances/{instance.sop_uid}")
    requests.delete(url, timeout=30).raise_for_status()


def test_broken_files_carry_their_reason_from_cloud_logging(stack: LocalStack, where: Where) -> None:
    corpus = {p.name: p for p in vendor_corpus()}
    truncated = synthetic_instance(seed=31).data
    files = {"MR_truncated.dcm": Path(corpus["MR_truncated.dcm"]).read_bytes(),
             "rtplan_truncated.dcm": Path(corpus["rtplan_truncated.dcm"]).read_bytes(),
             "half.dcm": truncated[: len(truncated) // 2]}
    for name, data in files.items():
        upload(stack, f"reasons/{name}", data)

    for name in files:
        letter = one_letter(where, f"reasons/{name}")
        (reason,) = letter.reasons  # the file's own entry, found by operation id and source
        assert reason["source"] == f"gs://{UPLOAD_BUCKET}/reasons/{name}"
        assert reason["message"] in letter.reason and "operation log" not in letter.reason
        assert "files failed to import" not in letter.reason


def test_fixed_conflict_requeued_lands_once_and_a_second_requeue_adds_nothing(stack: LocalStack,
                                                                             where: Where) -> None:
    first = synthetic_instance(seed=41)
    upload(stack, "conflict/first.dcm", first.data)
    wait_for(lambda: rows_of(stack, [first.sop_uid]) == {first.sop_uid: 1}, "the first file's row")
    # Same UIDs, other bytes: the store refuses it until the old instance is gone.
    clash = synthetic_instance(first.study_uid, first.series_uid, first.sop_uid, rows=32, columns=32)
    upload(stack, "conflict/clash.dcm", clash.data)
    letter = one_letter(where, "conflict/clash.dcm")
    assert "already exists" in letter.reason

    delete_instance(stack, first)  # the operator's fix
    requeued = dead_letters.requeue(where, letter.id)

    assert "rewrote" in requeued.action
    wait_for(lambda: rows_of(stack, [first.sop_uid]) == {first.sop_uid: 2}, "the requeued file's row")
    assert stored(stack, first.study_uid) == 1  # the clash's instance: BigQuery keeps the deleted one's row too
    assert newest_rows(stack, first.sop_uid) == [32]  # through the dedup view: one row, the requeued file's
    assert letters_for(where, "conflict/") == []
    with pytest.raises(DeadLetterError, match="no dead letter"):
        dead_letters.requeue(where, letter.id)
    marker = synthetic_instance(seed=42)
    upload(stack, "conflict/marker.dcm", marker.data)  # a later event: what came before it has been handled
    wait_for(lambda: rows_of(stack, [marker.sop_uid]) == {marker.sop_uid: 1}, "a later upload's row")
    assert stored(stack, first.study_uid) == 1
    assert rows_of(stack, [first.sop_uid]) == {first.sop_uid: 2}


def test_requeue_of_a_still_broken_file_gives_one_new_dead_letter(stack: LocalStack, where: Where,
                                                                  cli_env: None, capsys) -> None:
    data = synthetic_instance(seed=51).data
    upload(stack, "still-broken/half.dcm", data[: len(data) // 2])
    old = one_letter(where, "still-broken/half.dcm")

    assert cli(["dead-letters", "requeue", old.id]) == 0
    new = one_letter(where, "still-broken/half.dcm")

    assert new.id != old.id and new.reasons == old.reasons
    assert cli(["dead-letters", "requeue", old.id]) == 1  # requeued already: gone, nothing re-driven
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dicom-pipeline: error: no dead letter {old.id} in gs://{STAGING_BUCKET}/dead-letter/"
                   " (requeued or purged already?)"]
    wait_for(lambda: len(letters_for(where, "still-broken/")) == 1, "no further dead letter")


def test_export_dead_letter_is_republished_to_the_notification_topic(stack: LocalStack, where: Where) -> None:
    instance = synthetic_instance(seed=61)
    upload(stack, "export/a.dcm", instance.data)
    wait_for(lambda: rows_of(stack, [instance.sop_uid]) == {instance.sop_uid: 1}, "the row")
    path = f"/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"
    # WRITE_EMPTY to the (non-empty) table: refused for the whole operation, which the log records as well.
    request = json.dumps({"tag": uuid.uuid4().hex, "resourcePaths": [path], "writeDisposition": "WRITE_EMPTY"})
    publish = f"http://{stack.pubsub.host}/v1/projects/{stack.names.project}/topics/{NOTIFICATION_TOPIC}:publish"
    requests.post(publish, json={"messages": [{"data": base64.b64encode(request.encode()).decode()}]},
                  timeout=30).raise_for_status()
    tag = json.loads(request)["tag"]
    old = one_letter(where, tag, "export")
    assert "not empty" in old.reason and old.reasons and "operation log" not in old.reason

    with pytest.raises(DeadLetterError, match="names no DICOM store"):  # the request relies on DICOM_STORE
        dead_letters.requeue(where, old.id)
    where = dataclasses.replace(where, dicom_store=DicomStoreName.from_string(stack.names.store_name))
    requeued = dead_letters.requeue(where, old.id)

    assert f"topics/{NOTIFICATION_TOPIC}" in requeued.action
    new = one_letter(where, tag, "export")
    assert new.id != old.id
    with pytest.raises(DeadLetterError):
        dead_letters.requeue(where, old.id)
    assert rows_of(stack, [instance.sop_uid]) == {instance.sop_uid: 1}


def test_malformed_records_and_missing_objects_are_one_line_errors(stack: LocalStack, where: Where,
                                                                    cli_env: None, capsys) -> None:
    staging = stack.storage_client().bucket(STAGING_BUCKET)
    staging.blob("dead-letter/import/malformedjson.json").upload_from_string(b"{not json")
    staging.blob("dead-letter/import/noobject.json").upload_from_string(json.dumps({"reason": "x"}))
    staging.blob("dead-letter/export/badmessage.json").upload_from_string(json.dumps({"message": {"data": "%%"}}))
    staging.blob("dead-letter/import/gone.json").upload_from_string(
        json.dumps({"object": f"gs://{UPLOAD_BUCKET}/never-uploaded.dcm", "reason": "r", "time": "2026-01-01T00:00Z"}))

    assert cli(["dead-letters", "list", "--format", "json"]) == 0
    listed = {d["id"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["import/malformedjson"]["problem"].startswith("not JSON")
    assert listed["export/badmessage"]["problem"] == "its message data is not valid base64"

    for dead_letter_id, expected in (("import/malformedjson", "cannot be requeued: not JSON"),
                                     ("import/noobject", "it names no gs:// object"),
                                     ("export/badmessage", "not valid base64"),
                                     ("import/gone", "never-uploaded.dcm no longer exists"),
                                     ("import/does-not-exist", "no dead letter import/does-not-exist"),
                                     ("bogus", "is not a dead-letter id")):
        assert cli(["dead-letters", "requeue", dead_letter_id]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0], err
    assert cli(["dead-letters", "show", "import/gone"]) == 0  # refused requeues leave the dead letter as it was
    assert "never-uploaded.dcm" in capsys.readouterr().out

    assert cli(["dead-letters", "purge", "import/malformedjson", "import/noobject", "export/badmessage",
                "import/gone"]) == 0
    assert cli(["dead-letters", "purge", "import/gone"]) == 1
    assert "no dead letter import/gone" in capsys.readouterr().err
    assert cli(["dead-letters", "requeue"]) == 2  # neither ids nor --all
