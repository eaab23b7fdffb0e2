"""The export function: notifications and explicit requests → exactly one row per instance."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from cloudevents.conversion import to_binary, to_structured

from dicom_pipeline.errors import TransientError
from dicom_samples import synthetic_instance
from main import export_dicom_metadata, import_dicom_object

from .conftest import pubsub_event

pytestmark = pytest.mark.integration


def _stored(pipeline, count: int = 1) -> list:
    instances = [synthetic_instance() for _ in range(count)]
    for i, instance in enumerate(instances):
        assert import_dicom_object(pipeline.upload(f"in/{i}.dcm", instance.data)) == "succeeded"
    return instances


def _export_records(pipeline) -> tuple[dict, dict]:
    """(claims, batch records) under idempotency/export/, each by object name."""
    records = {b.name: json.loads(b.download_as_bytes())
               for b in pipeline.staging.list_blobs(prefix="idempotency/export/")}
    batches = {name: r for name, r in records.items() if name.startswith("idempotency/export/batch-")}
    return {name: r for name, r in records.items() if name not in batches}, batches


def _path(pipeline, instance) -> str:
    return (f"{pipeline.store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
            f"/instances/{instance.sop_uid}")


def test_legacy_notification_exports_exactly_that_instance(pipeline) -> None:
    first, _second = _stored(pipeline, 2)

    assert export_dicom_metadata(pubsub_event(_path(pipeline, first))) == "succeeded"

    assert pipeline.rows() == [(first.sop_uid,)]
    (filter_file,) = pipeline.staging.list_blobs(prefix="filters/export/")
    assert filter_file.download_as_bytes().decode().strip().endswith(f"/instances/{first.sop_uid}")


def test_notification_with_attributes(pipeline) -> None:
    (instance,) = _stored(pipeline)
    attributes = {"action": "ImportDicomData", "storeName": pipeline.store.name, "sopInstanceUID": instance.sop_uid}

    assert export_dicom_metadata(pubsub_event(_path(pipeline, instance), attributes)) == "succeeded"
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_storage_class_change_notification_adds_no_row(pipeline) -> None:
    (instance,) = _stored(pipeline)
    event = pubsub_event(_path(pipeline, instance), {"action": "SetBlobSettings"})

    assert export_dicom_metadata(event) == "skipped"
    assert pipeline.rows() == []


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_through_functions_framework(pipeline, app_client, mode) -> None:
    (instance,) = _stored(pipeline)
    headers, body = (to_binary if mode == "binary" else to_structured)(pubsub_event(_path(pipeline, instance)))

    response = app_client("export_dicom_metadata").post("/", headers=headers, data=body)

    assert response.status_code == 200
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_sequential_redelivery_adds_no_rows(pipeline) -> None:
    instances = _stored(pipeline, 3)
    events = [pubsub_event(_path(pipeline, i)) for i in instances]

    outcomes = [export_dicom_metadata(e) for e in events for _ in range(3)]

    assert outcomes.count("succeeded") == 3 and outcomes.count("duplicate") == 6
    assert sorted(pipeline.rows()) == sorted((i.sop_uid,) for i in instances)


def test_concurrent_redelivery_adds_no_rows(pipeline) -> None:
    instances = _stored(pipeline, 3)
    events = [pubsub_event(_path(pipeline, i)) for i in instances]

    def deliver(event):
        # The platform redelivers after a raise; model that by retrying the transient "in progress" answer.
        for _ in range(200):
            try:
                return export_dicom_metadata(event)
            except TransientError:
                import time

                time.sleep(0.05)
        raise AssertionError("never settled")

    with ThreadPoolExecutor(9) as pool:
        outcomes = list(pool.map(deliver, [e for e in events for _ in range(3)]))

    assert outcomes.count("succeeded") == 3
    assert sorted(pipeline.rows()) == sorted((i.sop_uid,) for i in instances)


def test_a_burst_of_notifications_shares_export_operations(pipeline) -> None:
    instances = _stored(pipeline, 12)
    events = [pubsub_event(_path(pipeline, i)) for i in instances]
    start = threading.Barrier(len(events))

    def deliver(event):
        start.wait()  # all at once, as gen2 serves a burst of pushes concurrently
        return export_dicom_metadata(event)

    with ThreadPoolExecutor(len(events)) as pool:
        outcomes = list(pool.map(deliver, events))

    assert outcomes == ["succeeded"] * len(events)
    assert sorted(pipeline.rows()) == sorted((i.sop_uid,) for i in instances)  # one row each
    claims, batches = _export_records(pipeline)
    # One claim per message, naming its batch's record; the operation and its outcome once per batch.
    assert len(claims) == len(events) and {c["status"] for c in claims.values()} == {"claimed"}
    assert {c["batch"] for c in claims.values()} == set(batches)
    assert {b["status"] for b in batches.values()} == {"succeeded"}
    operations = {b["operation"] for b in batches.values()}
    filters = list(pipeline.staging.list_blobs(prefix="filters/export/"))
    # Arriving within the batch window, the twelve share far fewer operations than one each.
    assert len(operations) == len(filters) < len(events) // 2
    assert sum(len(f.download_as_bytes().decode().split()) for f in filters) == len(events)


def test_batching_off_gives_one_operation_per_message(pipeline, monkeypatch) -> None:
    monkeypatch.setenv("EXPORT_BATCH_WINDOW_SECONDS", "0")
    instances = _stored(pipeline, 4)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(export_dicom_metadata, [pubsub_event(_path(pipeline, i)) for i in instances]))

    assert outcomes == ["succeeded"] * 4
    assert len(list(pipeline.staging.list_blobs(prefix="filters/export/"))) == 4
    assert sorted(pipeline.rows()) == sorted((i.sop_uid,) for i in instances)


def test_notifications_from_the_store_end_to_end(pipeline, new_store, topic, monkeypatch) -> None:
    topic_path, pull = topic
    store = new_store(notificationConfig={"pubsubTopic": topic_path, "sendForBulkImport": True})
    monkeypatch.setenv("DICOM_STORE", store.name)
    pipeline.store = store
    instances = _stored(pipeline, 2)
    messages = pull(2)
    assert len(messages) == 2

    for message in messages:
        event = pubsub_event(message.data, dict(message.attributes), message_id=message.message_id)
        for _ in range(3):
            export_dicom_metadata(event)

    assert sorted(pipeline.rows()) == sorted((i.sop_uid,) for i in instances)


def test_explicit_request(pipeline) -> None:
    first, second, _third = _stored(pipeline, 3)
    request = {"store": pipeline.store.name, "table": pipeline.table, "writeDisposition": "WRITE_APPEND",
               "resourcePaths": [f"/studies/{first.study_uid}/series/{first.series_uid}/instances/{first.sop_uid}",
                                 f"/studies/{second.study_uid}"]}

    assert export_dicom_metadata(pubsub_event(json.dumps(request))) == "succeeded"
    assert sorted(pipeline.rows()) == sorted([(first.sop_uid,), (second.sop_uid,)])


def test_whole_store_only_when_asked(pipeline) -> None:
    instances = _stored(pipeline, 2)

    assert export_dicom_metadata(pubsub_event(json.dumps({"table": pipeline.table}))) is None
    assert pipeline.rows() == []
    assert export_dicom_metadata(pubsub_event(json.dumps({"wholeStore": True}))) == "succeeded"
    assert sorted(pipeline.rows()) == sorted((i.sop_uid,) for i in instances)


@pytest.mark.parametrize(("event", "reason"), [
    (pubsub_event(b"", raw_data="not base64!"), "base64"),
    (pubsub_event(b"hello there"), "neither a DICOM instance resource path nor a JSON export request"),
    (pubsub_event(b"{not json"), "not valid JSON"),
    (pubsub_event(b'{"resourcePaths": ["/patients/1"]}'), "resource path"),
    (pubsub_event(b'{"resourcePaths": ["/studies/1.2"], "writeDisposition": "SOMETIMES"}'), "writeDisposition"),
    (pubsub_event(b'{"resourcePaths": ["/studies/1.2"], "table": "p.d.t"}'), "bq://"),
    (pubsub_event(b"projects/x/dicomWeb/studies/1"), "resource path"),
])
def test_malformed_messages_are_dead_lettered(pipeline, event, reason) -> None:
    assert export_dicom_metadata(event) is None

    (letter,) = pipeline.dead_letters("export")
    assert reason in letter["reason"] and letter["event_id"] == event["id"] and "message" in letter
    assert pipeline.rows() == []


def test_structured_mode_with_no_message_is_dead_lettered(pipeline, app_client) -> None:
    from cloudevents.http import CloudEvent

    event = CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub/x",
                        "datacontenttype": "application/json"}, {"subscription": "s"})
    headers, body = to_structured(event)

    assert app_client("export_dicom_metadata").post("/", headers=headers, data=body).status_code == 200
    (letter,) = pipeline.dead_letters("export")
    assert "no message" in letter["reason"]


def test_dedup_query_collapses_a_race(pipeline) -> None:
    from dicom_pipeline.exporter import dedup_query
    from dicom_pipeline.names import BigQueryTableUri
    from local_bigquery.query import run_query

    (instance,) = _stored(pipeline)
    # Two messages for the same instance (the race the idempotency record cannot see) append two rows.
    for _ in range(2):
        export_dicom_metadata(pubsub_event(_path(pipeline, instance)))
    assert len(pipeline.rows()) == 2

    _, rows = run_query(pipeline.data_dir, dedup_query(BigQueryTableUri.from_string(pipeline.table)))
    assert len(rows) == 1


def test_pending_export_is_followed_not_repeated(pipeline, monkeypatch) -> None:
    import time

    (instance,) = _stored(pipeline)
    monkeypatch.setenv("OPERATION_WAIT_SECONDS", "0")
    event = pubsub_event(_path(pipeline, instance))

    outcome = export_dicom_metadata(event)
    deadline = time.monotonic() + 30
    while outcome == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
        outcome = export_dicom_metadata(event)  # follows the recorded operation

    assert outcome in ("succeeded", "duplicate")
    assert pipeline.rows() == [(instance.sop_uid,)]
    _, batches = _export_records(pipeline)  # the delivery that saw it done recorded the batch's outcome
    assert [b["status"] for b in batches.values()] == ["succeeded"]


def test_stale_claim_of_a_crashed_invocation_is_taken_over(pipeline) -> None:
    import hashlib

    (instance,) = _stored(pipeline)
    event = pubsub_event(_path(pipeline, instance))
    key = hashlib.sha256(event.data["message"]["messageId"].encode()).hexdigest()[:40]
    pipeline.staging.blob(f"idempotency/export/{key}.json").upload_from_string(
        json.dumps({"status": "started", "started": 0}))  # crashed long ago, before starting its export

    assert export_dicom_metadata(event) == "succeeded"
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_fresh_claim_of_another_invocation_raises_for_a_retry(pipeline) -> None:
    import hashlib
    import time

    (instance,) = _stored(pipeline)
    event = pubsub_event(_path(pipeline, instance))
    key = hashlib.sha256(event.data["message"]["messageId"].encode()).hexdigest()[:40]
    pipeline.staging.blob(f"idempotency/export/{key}.json").upload_from_string(
        json.dumps({"status": "started", "started": time.time()}))

    with pytest.raises(TransientError, match="in progress"):
        export_dicom_metadata(event)
    assert pipeline.rows() == []


def test_a_redelivery_in_the_same_batch_as_its_original_is_a_duplicate(pipeline) -> None:
    (instance,) = _stored(pipeline)
    event = pubsub_event(_path(pipeline, instance))
    start = threading.Barrier(2)

    def deliver(_: int) -> str:
        start.wait()  # both inside one batch window: one claim, the other delivery shares the wait
        return export_dicom_metadata(event)

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(deliver, range(2)))

    assert outcomes == ["duplicate", "succeeded"]
    assert pipeline.rows() == [(instance.sop_uid,)]
    claims, batches = _export_records(pipeline)
    assert len(claims) == 1 and [b["status"] for b in batches.values()] == ["succeeded"]


def test_a_permanently_failed_export_is_dead_lettered_once(pipeline) -> None:
    first, second = _stored(pipeline, 2)
    assert export_dicom_metadata(pubsub_event(_path(pipeline, first))) == "succeeded"
    # WRITE_EMPTY into a table that has rows fails the operation (FAILED_PRECONDITION): permanent.
    request = {"writeDisposition": "WRITE_EMPTY", "resourcePaths": [_path(pipeline, second).split("/dicomWeb")[1]]}
    event = pubsub_event(json.dumps(request))

    assert export_dicom_metadata(event) is None  # dead-lettered, acknowledged
    (letter,) = pipeline.dead_letters("export")
    # The reason logged for the whole operation, read from Cloud Logging.
    assert "not empty" in letter["reason"] and letter["reasons"][0]["code"] == 6
    assert export_dicom_metadata(event) == "duplicate"  # the failure is recorded: a redelivery does nothing
    assert pipeline.rows() == [(first.sop_uid,)]
    _, batches = _export_records(pipeline)
    assert sorted(b["status"] for b in batches.values()) == ["failed", "succeeded"]


def test_a_claim_whose_batch_was_never_recorded_waits_then_is_taken_over(pipeline) -> None:
    import hashlib
    import time

    (instance,) = _stored(pipeline)
    event = pubsub_event(_path(pipeline, instance))
    key = hashlib.sha256(event.data["message"]["messageId"].encode()).hexdigest()[:40]
    claim = pipeline.staging.blob(f"idempotency/export/{key}.json")
    # Claimed by a delivery that has not recorded its batch yet (or crashed before it did).
    held = {"status": "claimed", "batch": "idempotency/export/batch-never-written.json", "started": time.time()}
    claim.upload_from_string(json.dumps(held))
    with pytest.raises(TransientError, match="in progress"):
        export_dicom_metadata(event)

    claim.upload_from_string(json.dumps({**held, "started": time.time() - 3600}))  # long ago: crashed
    assert export_dicom_metadata(event) == "succeeded"
    assert pipeline.rows() == [(instance.sop_uid,)]


def test_a_transiently_failed_export_releases_its_claims_and_redeliveries_raise(pipeline, monkeypatch) -> None:
    import functools
    import hashlib
    import subprocess
    import sys

    from healthcare_emulator.jobs import bigquery_export
    from local_bigquery import warehouse

    (instance,) = _stored(pipeline)
    # Another process holds the warehouse file of the table's project: the emulator's write gives up with
    # UNAVAILABLE (14), a failure a retry may mend, so nothing may answer "duplicate" for this message.
    monkeypatch.setattr(bigquery_export, "write_rows", functools.partial(warehouse.write_rows, timeout=0.5))
    path = warehouse.database_path(pipeline.data_dir, "locked-project")
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]);"
                               " print('held', flush=True); sys.stdin.read()", str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        request = {"table": "bq://locked-project.ds.instances",
                   "resourcePaths": [_path(pipeline, instance).split("/dicomWeb")[1]]}
        event = pubsub_event(json.dumps(request))

        with pytest.raises(TransientError, match="code 14"):
            export_dicom_metadata(event)
        claims, batches = _export_records(pipeline)
        assert claims == {}  # released: the platform's retry exports again
        ((name, batch),) = batches.items()
        assert batch["status"] == "pending"  # a failure a retry may mend is not recorded as the outcome

        # A redelivery that finds a claim naming that batch (its holder has not released it yet) must not
        # acknowledge the message as a duplicate: it raises as well.
        key = hashlib.sha256(event.data["message"]["messageId"].encode()).hexdigest()[:40]
        pipeline.staging.blob(f"idempotency/export/{key}.json").upload_from_string(
            json.dumps({"status": "claimed", "batch": name, "started": 0}))
        with pytest.raises(TransientError, match="failed"):
            export_dicom_metadata(event)

        # Two deliveries served in one batch: the one without the claim raises too, not "duplicate".
        pipeline.staging.blob(f"idempotency/export/{key}.json").delete()
        start = threading.Barrier(2)

        def deliver(_: int) -> str:
            start.wait()
            try:
                return str(export_dicom_metadata(event))
            except TransientError as exc:
                return f"raised: {exc}"

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(deliver, range(2)))
        assert all(o.startswith("raised:") for o in outcomes), outcomes
    finally:
        holder.communicate("")  # stdin closed: the holder exits and lets go of the file
