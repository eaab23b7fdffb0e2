"""The import function against fake-gcs-server and the Healthcare emulator over real HTTP."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from cloudevents.conversion import to_binary, to_structured

from dicom_samples import synthetic_instance, vendor_corpus
from main import import_dicom_object

from .conftest import storage_event

pytestmark = pytest.mark.integration


def test_direct_call_imports_the_object(pipeline, instance_count) -> None:
    event = pipeline.upload("in/one.dcm", synthetic_instance().data)

    assert import_dicom_object(event) == "succeeded"

    assert instance_count(pipeline.store) == 1
    records = list(pipeline.staging.list_blobs(prefix="outcomes/import/"))
    assert len(records) == 1 and b'"succeeded"' in records[0].download_as_bytes()


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_through_functions_framework(pipeline, instance_count, app_client, mode) -> None:
    event = pipeline.upload(f"in/{mode}.DCM", synthetic_instance().data)  # suffix match is case-insensitive
    headers, body = (to_binary if mode == "binary" else to_structured)(event)

    response = app_client("import_dicom_object").post("/", headers=headers, data=body)

    assert response.status_code == 200
    assert instance_count(pipeline.store) == 1


@pytest.mark.parametrize("concurrent", [False, True])
def test_redelivery_imports_once(pipeline, instance_count, concurrent) -> None:
    event = pipeline.upload("in/again.dcm", synthetic_instance().data)

    if concurrent:
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(lambda _: import_dicom_object(event), range(3)))
    else:
        outcomes = [import_dicom_object(event) for _ in range(3)]

    assert set(outcomes) <= {"succeeded", "already-imported"}
    assert instance_count(pipeline.store) == 1


def test_non_candidates_are_skipped_with_one_info_line(pipeline, instance_count, capsys) -> None:
    events = [pipeline.upload("notes.txt", b"hello"),
              pipeline.upload("empty.dcm", b""),
              storage_event(pipeline.source.name, "gcloud/tmp/parallel_composite_uploads/x/0.dcm", 10)]

    assert [import_dicom_object(e) for e in events] == ["skipped"] * 3

    lines = [line for line in capsys.readouterr().out.splitlines() if '"skipped"' in line]
    assert len(lines) == 3 and all('"severity": "INFO"' in line for line in lines)
    assert "zero-size" in lines[1] and "composite" in lines[2]
    assert instance_count(pipeline.store) == 0


def test_an_overwritten_generation_is_skipped_not_retried(pipeline, instance_count) -> None:
    stale = pipeline.upload("in/overwritten.dcm", synthetic_instance(seed=1).data)
    current = pipeline.upload("in/overwritten.dcm", synthetic_instance(seed=2).data)

    assert import_dicom_object(stale) == "skipped"  # a 404 on the pinned generation: nothing to import
    assert import_dicom_object(current) == "succeeded"
    assert instance_count(pipeline.store) == 1


def test_configurable_suffixes(pipeline, instance_count, monkeypatch) -> None:
    monkeypatch.setenv("IMPORT_SUFFIXES", ".dicom, .dcm")
    event = pipeline.upload("in/x.DICOM", synthetic_instance().data)

    assert import_dicom_object(event) == "succeeded"
    assert instance_count(pipeline.store) == 1


def test_wildcard_names_import_only_the_triggering_object(pipeline, instance_count) -> None:
    # Objects a pattern would also match: if the name were used as a pattern these would be imported too.
    for name in ("in/scanA1.dcm", "in/scanAB.dcm", "in/scanA.dcm"):
        pipeline.upload(name, synthetic_instance().data)
    events = [pipeline.upload("in/scan*.dcm", synthetic_instance().data),
              pipeline.upload("in/scanA?.dcm", synthetic_instance().data),
              pipeline.upload("in/scan[A].dcm", synthetic_instance().data)]

    assert [import_dicom_object(e) for e in events] == ["succeeded"] * 3
    assert instance_count(pipeline.store) == 3


def test_bad_files_are_dead_lettered_and_valid_files_land(pipeline, instance_count) -> None:
    good = [synthetic_instance() for _ in range(3)]
    bad = {"random.dcm": os.urandom(4096), "short.dcm": b"tiny",
           "huge-not-dicom.dcm": b"\0" * (20 * 1024 * 1024)}
    broken = [p for p in vendor_corpus() if not _is_part10(p)]
    assert broken, "pydicom's corpus should contain files without a Part-10 preamble"
    for path in broken:
        bad[f"corpus/{path.name}.dcm"] = path.read_bytes()
    events = [pipeline.upload(name, data) for name, data in bad.items() if data]
    events += [pipeline.upload(f"good/{i}.dcm", g.data) for i, g in enumerate(good)]

    outcomes = [import_dicom_object(e) for e in events]

    assert outcomes[-3:] == ["succeeded"] * 3
    assert outcomes[:-3] == [None] * (len(events) - 3)
    letters = pipeline.dead_letters("import")
    assert len(letters) == len(events) - 3
    assert all("DICM" in letter["reason"] and letter["event_id"] and letter["time"] for letter in letters)
    assert {letter["object"] for letter in letters} == {f"gs://{pipeline.source.name}/{n}" for n in bad if bad[n]}
    assert instance_count(pipeline.store) == 3


def _is_part10(path) -> bool:
    with open(path, "rb") as f:
        f.seek(128)
        return f.read(4) == b"DICM"


def test_uid_conflict_is_permanent(pipeline, instance_count) -> None:
    first = synthetic_instance()
    clash = synthetic_instance(first.study_uid, first.series_uid, first.sop_uid, rows=32, columns=32)
    assert import_dicom_object(pipeline.upload("a.dcm", first.data)) == "succeeded"

    assert import_dicom_object(pipeline.upload("b.dcm", clash.data)) is None

    (letter,) = pipeline.dead_letters("import")
    assert letter["operation"] and "b.dcm" in letter["object"]
    assert instance_count(pipeline.store) == 1


def test_operation_running_at_the_bound_is_recorded_pending(pipeline, instance_count, monkeypatch) -> None:
    monkeypatch.setenv("OPERATION_WAIT_SECONDS", "0")
    event = pipeline.upload("slow.dcm", synthetic_instance().data)

    first = import_dicom_object(event)

    assert first in ("pending", "succeeded")
    if first == "pending":
        (record,) = pipeline.staging.list_blobs(prefix="outcomes/import/")
        assert b'"pending"' in record.download_as_bytes() and b"operations/" in record.download_as_bytes()
    monkeypatch.setenv("OPERATION_WAIT_SECONDS", "30")
    import time

    deadline = time.monotonic() + 30
    outcome = first
    while outcome == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
        outcome = import_dicom_object(event)  # follows the recorded operation, never a second import
    assert outcome in ("succeeded", "already-imported")
    assert instance_count(pipeline.store) == 1


def test_missing_setting_raises_naming_it(pipeline, monkeypatch) -> None:
    from dicom_pipeline.errors import ConfigError

    monkeypatch.delenv("STAGING_BUCKET")
    with pytest.raises(ConfigError, match="STAGING_BUCKET"):
        import_dicom_object(pipeline.upload("x.dcm", synthetic_instance().data))


def test_unreachable_api_is_transient(pipeline, monkeypatch) -> None:
    from dicom_pipeline.errors import TransientError

    monkeypatch.setenv("HEALTHCARE_API_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(TransientError):
        import_dicom_object(pipeline.upload("x.dcm", synthetic_instance().data))
    assert pipeline.dead_letters("import") == []


def test_configured_storage_class_is_used(pipeline, healthcare, monkeypatch) -> None:
    monkeypatch.setenv("IMPORT_STORAGE_CLASS", "coldline")
    instance = synthetic_instance()

    assert import_dicom_object(pipeline.upload("cold.dcm", instance.data)) == "succeeded"

    resource = (f"{pipeline.store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
                f"/instances/{instance.sop_uid}")
    info = healthcare.projects().locations().datasets().dicomStores().dicomWeb().studies().series().instances() \
        .getStorageInfo(resource=resource).execute()
    assert info["blobStorageInfo"]["storageClass"] == "COLDLINE"


@pytest.mark.slow
def test_whole_vendor_corpus_each_file_lands_or_is_dead_lettered_with_a_reason(pipeline, instance_count) -> None:
    corpus = vendor_corpus()
    events = {f"corpus/{i:03d}-{p.name}.dcm": pipeline.upload(f"corpus/{i:03d}-{p.name}.dcm", p.read_bytes())
              for i, p in enumerate(corpus) if p.stat().st_size}

    outcomes = {name: import_dicom_object(event) for name, event in events.items()}

    records = {letter["object"].split("/", 3)[3]: letter for letter in pipeline.dead_letters("import")}
    letters = {name: record["reason"] for name, record in records.items()}
    assert {n for n, o in outcomes.items() if o is None} == set(letters)
    assert all(o in ("succeeded", None) for o in outcomes.values())
    # Refused by the function (no preamble) or by the API: then the file's own reason, read from Cloud Logging.
    from_logging = {name: record for name, record in records.items() if record.get("operation")}
    assert from_logging, "some corpus files have a preamble and still fail in the API"
    assert all("DICM" in reason for name, reason in letters.items() if name not in from_logging)
    for record in from_logging.values():
        (reason,) = record["reasons"]
        assert reason["source"] == record["object"] and reason["message"] in record["reason"], record
        assert "operation log" not in record["reason"] and "failed to import" not in record["reason"]
    assert instance_count(pipeline.store) > 0
    print(f"{sum(o == 'succeeded' for o in outcomes.values())} landed, {len(letters)} dead-lettered")


def test_legacy_background_event_is_converted_by_functions_framework(pipeline, instance_count, app_client) -> None:
    event = pipeline.upload("legacy.dcm", synthetic_instance().data)
    body = {"context": {"eventId": "legacy-1", "timestamp": "2026-01-01T00:00:00.000Z",
                        "eventType": "google.storage.object.finalize",
                        "resource": {"service": "storage.googleapis.com", "type": "storage#object",
                                     "name": f"projects/_/buckets/{pipeline.source.name}/objects/legacy.dcm"}},
            "data": event.data}

    response = app_client("import_dicom_object").post("/", json=body)

    assert response.status_code == 200
    assert instance_count(pipeline.store) == 1


def _records(pipeline) -> list[dict]:
    import json

    return [json.loads(b.download_as_bytes()) for b in pipeline.staging.list_blobs(prefix="outcomes/import/")]


def _all_at_once(events):
    import threading

    start = threading.Barrier(len(events))

    def deliver(event):
        start.wait()  # together, as gen2 serves a burst of events concurrently
        return import_dicom_object(event)

    with ThreadPoolExecutor(len(events)) as pool:
        return list(pool.map(deliver, events))


def test_a_burst_of_uploads_shares_import_operations(pipeline, instance_count) -> None:
    events = [pipeline.upload(f"burst/{i}.dcm", synthetic_instance().data) for i in range(12)]
    events.append(events[0])  # a redelivery served with its original is imported once

    outcomes = _all_at_once(events)

    assert set(outcomes) <= {"succeeded", "already-imported"} and outcomes.count("succeeded") >= 12
    assert instance_count(pipeline.store) == 12
    records = _records(pipeline)
    assert len(records) == 12 and {r["status"] for r in records} == {"succeeded"}
    # Arriving within the batch window, the twelve share far fewer operations than one each ...
    assert len({r["operation"] for r in records}) < 12 // 2
    # ... each reading copies of exactly its batch's objects, pinned to the event's generation.
    copies = [b.name for b in pipeline.staging.list_blobs(prefix="staging/import/batch-")]
    assert len(copies) == 12


def test_a_failed_batch_gives_each_object_its_own_outcome(pipeline, instance_count) -> None:
    first = synthetic_instance()
    assert import_dicom_object(pipeline.upload("first.dcm", first.data)) == "succeeded"
    # Same UIDs, different bytes: a conflict, which fails the whole batch it is imported in.
    clash = synthetic_instance(first.study_uid, first.series_uid, first.sop_uid, rows=32, columns=32)
    events = [pipeline.upload("clash.dcm", clash.data)]
    events += [pipeline.upload(f"good/{i}.dcm", synthetic_instance().data) for i in range(5)]

    outcomes = _all_at_once(events)

    assert outcomes == [None] + ["succeeded"] * 5
    (letter,) = pipeline.dead_letters("import")
    assert letter["object"].endswith("/clash.dcm") and letter["operation"]
    assert instance_count(pipeline.store) == 6
    # Each outcome names the operation that decided it: the clash's and the good files' own imports.
    assert all(r.get("batch") is None for r in _records(pipeline))


def test_an_object_whose_copy_fails_is_left_out_of_its_batch(pipeline, instance_count) -> None:
    from dicom_pipeline import importer
    from dicom_pipeline.config import Settings
    from dicom_pipeline.events import storage_object

    good = [pipeline.upload(f"ok/{i}.dcm", synthetic_instance().data) for i in range(2)]
    gone = pipeline.upload("gone.dcm", synthetic_instance().data)
    pipeline.source.blob("gone.dcm").upload_from_string(synthetic_instance().data)  # a newer generation
    settings = Settings.from_env()
    items = [importer._Item(storage_object(e.data), f"key{i}") for i, e in enumerate([*good, gone])]

    operation, left_out = importer._import_batch((settings, settings.dicom_store, None), items)

    assert left_out == {"key2"}
    assert importer._wait(settings, operation).get("done") and instance_count(pipeline.store) == 2


def test_import_batching_off_gives_one_operation_per_object(pipeline, instance_count, monkeypatch) -> None:
    monkeypatch.setenv("IMPORT_BATCH_WINDOW_SECONDS", "0")
    events = [pipeline.upload(f"alone/{i}.dcm", synthetic_instance().data) for i in range(4)]

    assert _all_at_once(events) == ["succeeded"] * 4

    assert len({r["operation"] for r in _records(pipeline)}) == 4
    assert list(pipeline.staging.list_blobs(prefix="staging/import/")) == []
    assert instance_count(pipeline.store) == 4
