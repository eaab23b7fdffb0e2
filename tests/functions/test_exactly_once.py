"""Exactly one row per instance when the export call's answer is lost, the function is killed mid-call, or a
notification never comes: faults made to happen for real (a fault proxy in front of the Healthcare emulator,
kill -9 of a real process), then the reconciler."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main as cli
from dicom_pipeline import exporter
from dicom_pipeline.errors import TableMissing, TransientError
from local_stack.fault_proxy import FaultProxy, Rule
from main import export_dicom_metadata

from .conftest import pubsub_event
from .test_export_function import _export_records, _path, _stored

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(pipeline, emulator, monkeypatch):
    """The functions reach the Healthcare emulator through a fault proxy (no rules: it forwards)."""
    with FaultProxy(emulator.url) as running:
        monkeypatch.setenv("HEALTHCARE_API_ENDPOINT", running.url)
        yield running


def _rows_settle(pipeline, expected: int, within: float = 30.0) -> list:
    """The table's rows once they reach `expected`, or whatever is there after `within` seconds."""
    deadline = time.monotonic() + within
    rows = pipeline.rows()
    while len(rows) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = pipeline.rows()
    return rows


def _reconcile(pipeline, capsys, *extra: str) -> dict:
    capsys.readouterr()
    code = cli(["reconcile", "--data-dir", str(pipeline.data_dir), "--staging-bucket", pipeline.staging.name,
                "--unknown-after", "0", "--format", "json", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    # The functions' JSON log lines share stdout in this process: the report is the indented document.
    return json.loads(out[out.index("{\n"):])


def _batch_statuses(pipeline) -> list[str]:
    return sorted(b["status"] for b in _export_records(pipeline)[1].values())


def test_a_lost_answer_keeps_the_claim_and_appends_once(pipeline, proxy, capsys) -> None:
    (instance,) = _stored(pipeline)
    proxy.rules.append(Rule("lost", "POST", ":export", after="drop", times=1))
    event = pubsub_event(_path(pipeline, instance))

    with pytest.raises(TransientError, match="outcome unknown"):
        export_dicom_metadata(event)
    assert proxy.counts == {"lost": 1}
    assert _rows_settle(pipeline, 1) == [(instance.sop_uid,)]  # the API did act
    claims, _ = _export_records(pipeline)
    assert len(claims) == 1 and _batch_statuses(pipeline) == ["unknown"]  # kept, not released

    assert export_dicom_metadata(event) == "unresolved"  # the redelivery does not export again
    report = _reconcile(pipeline, capsys)
    assert (report["stored"], report["missing"], report["exported"]) == (1, 0, 0)
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_an_answer_lost_as_503_and_a_request_refused_with_503_are_both_exported_once(pipeline, proxy,
                                                                                       capsys) -> None:
    acted, refused = _stored(pipeline, 2)
    proxy.rules += [Rule("after", "POST", ":export", after=503, times=1)]
    with pytest.raises(TransientError, match="outcome unknown"):
        export_dicom_metadata(pubsub_event(_path(pipeline, acted)))
    proxy.rules[:] = [Rule("before", "POST", ":export", before=503, times=1)]
    with pytest.raises(TransientError, match="outcome unknown"):  # a 503 cannot say whether the API acted
        export_dicom_metadata(pubsub_event(_path(pipeline, refused)))
    assert _rows_settle(pipeline, 1) == [(acted.sop_uid,)]

    report = _reconcile(pipeline, capsys)
    assert (report["missing"], report["exported"], report["takenOver"]) == (1, 1, 1)
    assert sorted(pipeline.rows()) == sorted([(acted.sop_uid,), (refused.sop_uid,)])
    assert _reconcile(pipeline, capsys)["exported"] == 0  # a second pass finds nothing to do


def test_an_explicit_request_with_a_lost_answer_is_dead_lettered_not_repeated(pipeline, proxy) -> None:
    (instance,) = _stored(pipeline)
    proxy.rules.append(Rule("lost", "POST", ":export", after="drop", times=1))
    event = pubsub_event(json.dumps({"resourcePaths": [_path(pipeline, instance).split("/dicomWeb")[1]]}))

    with pytest.raises(TransientError, match="outcome unknown"):
        export_dicom_metadata(event)
    assert export_dicom_metadata(event) is None  # no reconciler covers a request: the operator decides
    (letter,) = pipeline.dead_letters("export")
    assert "outcome of this export request is unknown" in letter["reason"]
    assert _rows_settle(pipeline, 1) == [(instance.sop_uid,)]  # exported once, by the lost call


def test_a_429_is_a_refusal_the_claim_is_released_and_the_retry_exports(pipeline, proxy) -> None:
    (instance,) = _stored(pipeline)
    proxy.rules.append(Rule("busy", "POST", ":export", before=429, times=1))
    event = pubsub_event(_path(pipeline, instance))

    with pytest.raises(TransientError, match="HTTP 429"):
        export_dicom_metadata(event)
    assert _export_records(pipeline) == ({}, {})  # nothing was started: claims and intent are gone
    assert export_dicom_metadata(event) == "succeeded"
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_failed_polls_are_retried_in_process_with_one_warning_each(pipeline, proxy, caplog) -> None:
    (instance,) = _stored(pipeline)
    proxy.rules.append(Rule("poll", "GET", "/operations/", before=503, times=2))
    with caplog.at_level(logging.WARNING, logger="dicom_pipeline"):
        assert export_dicom_metadata(pubsub_event(_path(pipeline, instance))) == "succeeded"
    assert proxy.counts == {"poll": 2}
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and all(r.exc_info is None for r in retries)  # a line each, no traceback
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_kill_9_while_the_export_call_is_in_flight_never_exports_twice(pipeline, proxy, capsys,
                                                                       monkeypatch) -> None:
    (instance,) = _stored(pipeline)
    proxy.rules.append(Rule("hold", "POST", ":export", after="timeout", times=1))
    event = pubsub_event(_path(pipeline, instance))
    script = ("import base64, json, sys\nfrom cloudevents.http import CloudEvent\nfrom main import"
              " export_dicom_metadata\nattributes, data = json.loads(sys.argv[1])\n"
              "export_dicom_metadata(CloudEvent(attributes, data))\n")
    attributes = {k: v for k, v in event.get_attributes().items() if k not in ("time", "specversion")}
    child = subprocess.Popen([sys.executable, "-c", script, json.dumps([attributes, event.data])], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while proxy.counts.get("hold") != 1 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert proxy.counts.get("hold") == 1, "the export call never reached the proxy"
        os.kill(child.pid, signal.SIGKILL)  # between the call and recording its operation
    finally:
        child.wait(30)
    assert _rows_settle(pipeline, 1) == [(instance.sop_uid,)]
    assert _batch_statuses(pipeline) == ["starting"]  # the intent, recorded before the call

    assert export_dicom_metadata(event) == "unresolved"  # a redelivery never starts it again
    monkeypatch.setenv("STALE_CLAIM_SECONDS", "0")  # no function can still be running: decidable
    assert export_dicom_metadata(event) == "unresolved"  # not even once the claim is stale
    report = _reconcile(pipeline, capsys)
    assert (report["missing"], report["exported"]) == (0, 0)
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_an_intent_whose_holder_died_before_calling_is_exported_once_stale(pipeline, capsys) -> None:
    (instance,) = _stored(pipeline)
    line = _path(pipeline, instance).split("/dicomWeb")[1]
    # What kill -9 between recording the intent and sending the call leaves behind.
    batch = "idempotency/export/batch-killed.json"
    pipeline.staging.blob(batch).upload_from_string(json.dumps({"status": "starting", "started": time.time()}))
    pipeline.staging.blob(exporter.instance_claim(line)).upload_from_string(
        json.dumps({"status": "claimed", "batch": batch, "started": time.time()}))

    assert export_dicom_metadata(pubsub_event(_path(pipeline, instance))) == "unresolved"
    fresh = _reconcile(pipeline, capsys)  # its holder might still be about to call: not decidable yet
    assert (fresh["missing"], fresh["exported"], fresh["deferred"]) == (1, 0, 1)
    stale = _reconcile(pipeline, capsys, "--stale-claim-seconds", "0")
    assert (stale["exported"], stale["takenOver"]) == (1, 1)
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_a_claim_left_pending_on_a_failed_operation_is_taken_over(pipeline, emulator, capsys) -> None:
    from dicom_pipeline import healthcare
    from dicom_pipeline.names import BigQueryTableUri, DicomStoreName

    first, second = _stored(pipeline, 2)
    assert export_dicom_metadata(pubsub_event(_path(pipeline, first))) == "succeeded"
    # A real failed operation: WRITE_EMPTY into a table that has rows.
    started = healthcare.export_to_bigquery(emulator.url, DicomStoreName.from_string(pipeline.store.name),
                                            BigQueryTableUri.from_string(pipeline.table), "WRITE_EMPTY", None)
    failed = healthcare.wait(emulator.url, started, 30)
    assert "error" in failed
    # Its holder died after the operation failed, before releasing the claim.
    batch = "idempotency/export/batch-holder-died.json"
    pipeline.staging.blob(batch).upload_from_string(
        json.dumps({"status": "pending", "operation": failed["name"], "started": time.time()}))
    pipeline.staging.blob(exporter.instance_claim(_path(pipeline, second).split("/dicomWeb")[1])).upload_from_string(
        json.dumps({"status": "claimed", "batch": batch, "started": time.time()}))

    report = _reconcile(pipeline, capsys)
    assert (report["missing"], report["exported"], report["takenOver"]) == (1, 1, 1)
    assert sorted(pipeline.rows()) == sorted([(first.sop_uid,), (second.sop_uid,)])


def test_an_instance_whose_notification_never_came_is_exported_by_the_reconciler(pipeline, capsys) -> None:
    first, second = _stored(pipeline, 2)
    assert export_dicom_metadata(pubsub_event(_path(pipeline, first))) == "succeeded"

    dry = _reconcile(pipeline, capsys, "--dry-run")
    assert (dry["stored"], dry["missing"], dry["exported"]) == (2, 1, 1)
    assert dry["instances"] == [_path(pipeline, second).split("/dicomWeb")[1]]
    assert pipeline.rows() == [(first.sop_uid,)]  # a dry run exports nothing

    assert _reconcile(pipeline, capsys)["exported"] == 1
    assert sorted(pipeline.rows()) == sorted([(first.sop_uid,), (second.sop_uid,)])
    # Its notification arriving late follows the reconciler's export: no second row.
    assert export_dicom_metadata(pubsub_event(_path(pipeline, second))) == "duplicate"
    assert len(pipeline.rows()) == 2


def test_the_scheduled_reconcile_message_runs_a_pass_in_the_export_function(pipeline, monkeypatch) -> None:
    from dicom_pipeline import bigquery
    from local_bigquery.query import QueryError, run_query

    def local_warehouse(project: str, sql: str) -> list:
        """BigQuery's stand-in in the local stack: the emulator's warehouse, queried with the same SQL."""
        try:
            return run_query(pipeline.data_dir, sql)[1]
        except QueryError as exc:
            if "does not exist" in str(exc):
                raise TableMissing(str(exc)) from exc
            raise

    monkeypatch.setattr(bigquery, "query_rows", local_warehouse)
    (instance,) = _stored(pipeline)  # no notification reached the export function

    assert export_dicom_metadata(pubsub_event(json.dumps({"reconcile": True}))) == "reconciled"
    assert pipeline.rows() == [(instance.sop_uid,)]
    assert export_dicom_metadata(pubsub_event(json.dumps({"reconcile": True}))) == "reconciled"
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_failed_cloud_storage_reads_are_retried_in_process_with_one_warning_each(pipeline, fake_gcs, monkeypatch,
                                                                                 caplog) -> None:
    (instance,) = _stored(pipeline)
    with FaultProxy(fake_gcs.url, [Rule("read", "GET", "/o/", before=503, times=2)]) as gcs_proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_proxy.url)
        with caplog.at_level(logging.WARNING, logger="dicom_pipeline"):
            assert export_dicom_metadata(pubsub_event(_path(pipeline, instance))) == "succeeded"
            assert export_dicom_metadata(pubsub_event(_path(pipeline, instance))) == "duplicate"  # reads its claim
    assert gcs_proxy.counts == {"read": 2}
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and all("HTTP 503" in m for m in retries), retries
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_a_notification_published_after_the_export_finished_is_a_re_stored_instance(pipeline) -> None:
    from datetime import UTC, datetime

    (instance,) = _stored(pipeline)
    assert export_dicom_metadata(pubsub_event(_path(pipeline, instance))) == "succeeded"
    # Another notification of the same store, published before that export finished: a duplicate.
    assert export_dicom_metadata(pubsub_event(_path(pipeline, instance))) == "duplicate"
    # Published after it: the instance was deleted and stored again since, and this version gets its row.
    later = pubsub_event(_path(pipeline, instance))
    later.data["message"]["publishTime"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    assert export_dicom_metadata(later) == "succeeded"
    assert export_dicom_metadata(later) == "duplicate"  # and its redelivery is a duplicate again
    assert len(pipeline.rows()) == 2
