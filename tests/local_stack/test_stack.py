"""The whole pipeline offline, through real processes: upload → fake-gcs-server → Pub/Sub → Eventarc adapter →
import function (functions-framework) → Healthcare emulator → notification → adapter → export function → row."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dicom_samples import synthetic_instance, vendor_corpus
from local_stack.pubsub_emulator import launcher_path
from local_stack.stack import NOTIFICATION_TOPIC, STORAGE_TOPIC, UPLOAD_BUCKET, LocalStack

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(launcher_path() is None, reason="the Pub/Sub emulator is not installed")]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack() as running:
        yield running


def upload(stack: LocalStack, name: str, data: bytes) -> None:
    stack.storage_client().bucket(UPLOAD_BUCKET).blob(name).upload_from_string(data, content_type="application/dicom")


def rows_of(stack: LocalStack, sop_uids: list[str]) -> dict[str, int]:
    counts = stack.row_counts()
    return {uid: counts[uid] for uid in sop_uids if uid in counts}


def stored(stack: LocalStack, study_uid: str) -> int:
    url = f"{stack.healthcare.url}/v1/{stack.names.store_name}/dicomWeb/studies/{study_uid}/instances"
    response = requests.get(url, timeout=30)
    return len(response.json()) if response.status_code == 200 and response.content else 0


class Tap:
    """An extra pull subscription on a topic: records the messages the trigger subscriptions also get."""

    def __init__(self, stack: LocalStack, topic: str):
        self.base = f"http://{stack.pubsub.host}/v1/projects/{stack.names.project}"
        self.name = f"tap-{uuid.uuid4().hex[:8]}"
        requests.put(f"{self.base}/subscriptions/{self.name}", timeout=30,
                     json={"topic": f"projects/{stack.names.project}/topics/{topic}"}).raise_for_status()

    def pull(self) -> list[dict[str, Any]]:
        response = requests.post(f"{self.base}/subscriptions/{self.name}:pull", timeout=30,
                                 json={"maxMessages": 1000, "returnImmediately": True})
        received = response.json().get("receivedMessages", [])
        if received:
            requests.post(f"{self.base}/subscriptions/{self.name}:acknowledge", timeout=30,
                          json={"ackIds": [m["ackId"] for m in received]}).raise_for_status()
        return [m["message"] for m in received]


def push(url: str, message: dict[str, Any]) -> int:
    """Redeliver a message exactly as the emulator pushes it (same messageId)."""
    return requests.post(url, json={"subscription": "projects/p/subscriptions/redelivery", "message": message},
                         timeout=120).status_code


def test_n_uploads_give_n_instances_and_n_rows(stack: LocalStack) -> None:
    study = f"1.2.826.0.1.3680043.10.{uuid.uuid4().int % 10**12}"
    instances = [synthetic_instance(study, f"{study}.1", f"{study}.1.{n}", instance_number=n, seed=n)
                 for n in range(1, 7)]
    for n, instance in enumerate(instances):
        upload(stack, f"n-uploads/{n}.dcm", instance.data)

    sops = [i.sop_uid for i in instances]
    wait_for(lambda: len(rows_of(stack, sops)) == len(sops), "a row per instance")
    assert stored(stack, study) == len(instances)
    assert rows_of(stack, sops) == dict.fromkeys(sops, 1)


def test_same_object_twice_and_redelivered_events_give_one_instance_and_one_row(stack: LocalStack) -> None:
    storage_tap, notification_tap = Tap(stack, STORAGE_TOPIC), Tap(stack, NOTIFICATION_TOPIC)
    instance = synthetic_instance(seed=11)
    upload(stack, "twice/a.dcm", instance.data)
    upload(stack, "twice/a.dcm", instance.data)  # a second generation: a second finalize event
    upload(stack, "twice/copy-of-a.dcm", instance.data)  # and the same bytes under another name
    wait_for(lambda: rows_of(stack, [instance.sop_uid]) == {instance.sop_uid: 1}, "the row")

    storage_events: list[dict[str, Any]] = []
    wait_for(lambda: bool(storage_events.extend(storage_tap.pull())) or len(storage_events) >= 3, "storage events")
    notifications: list[dict[str, Any]] = []
    wait_for(lambda: bool(notifications.extend(notification_tap.pull())) or len(notifications) >= 1, "notifications")
    for _ in range(2):  # every event delivered again, twice, with its original messageId
        for message in storage_events:
            # Also the first upload's event, whose generation no longer exists: skipped, not retried forever.
            assert push(f"{stack.adapter.url}/", message) == 204
        for message in notifications:
            path = f"/projects/{stack.names.project}/topics/{NOTIFICATION_TOPIC}"
            assert push(f"{stack.export_function.url}{path}", message) == 200
    time.sleep(1.0)  # let any stray notification a duplicate import might cause go through the trigger subscription
    notifications += notification_tap.pull()

    assert base64.b64decode(notifications[0]["data"]).decode().endswith(instance.sop_uid)
    assert stored(stack, instance.study_uid) == 1
    assert rows_of(stack, [instance.sop_uid]) == {instance.sop_uid: 1}


def test_broken_files_are_dead_lettered_and_good_files_unaffected(stack: LocalStack) -> None:
    corpus = {p.name: p for p in vendor_corpus()}
    broken = ["no_meta.dcm", "MR_truncated.dcm"]
    for name in broken:
        upload(stack, f"broken/{name}", Path(corpus[name]).read_bytes())
    good = [synthetic_instance(seed=21), synthetic_instance(seed=22)]
    for n, instance in enumerate(good):
        upload(stack, f"broken/good-{n}.dcm", instance.data)

    def letters() -> dict[str, str]:
        return {d["object"]["name"] if isinstance(d["object"], dict) else str(d["object"]): d["reason"]
                for d in stack.dead_letters() if "broken/" in str(d["object"])}

    wait_for(lambda: len(letters()) == len(broken), "dead letters")
    wait_for(lambda: len(rows_of(stack, [i.sop_uid for i in good])) == len(good), "the good files' rows")
    reasons = letters()
    assert sorted(n.rsplit("/", 1)[-1] for n in reasons) == sorted(broken)
    assert "DICM" in next(r for n, r in reasons.items() if n.endswith("no_meta.dcm"))
    assert all(stored(stack, i.study_uid) == 1 for i in good)
    assert rows_of(stack, [i.sop_uid for i in good]) == {i.sop_uid: 1 for i in good}


def _live_members(groups: set[int]) -> list[str]:
    """Processes (not zombies) in any of the given process groups, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append(stat.parent.name)
    return found


def test_shutdown_leaves_no_process() -> None:
    with LocalStack() as running:
        pids = running.pids()
        assert set(pids) == {"pubsub-emulator", "fake-gcs-server", "healthcare-emulator", "import_dicom_object",
                             "export_dicom_metadata", "eventarc-adapter"}
        # Each component leads its own session; its children (gunicorn's worker, the JVM) are in its group.
        assert _live_members(set(pids.values()))
    assert _live_members(set(pids.values())) == []


def test_sigterm_to_the_owner_leaves_no_process(tmp_path) -> None:
    """A timeout or a cancelled CI job sends SIGTERM: the with-block unwinds and stops every component."""
    import json
    import signal
    import subprocess
    import sys

    script = ("import json, time\n"
              "from local_stack.stack import LocalStack\n"
              "with LocalStack() as stack:\n"
              "    print(json.dumps(stack.pids()), flush=True)\n"
              "    time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        pids = json.loads(owner.stdout.readline())
        assert _live_members(set(pids.values()))
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(60) == 128 + signal.SIGTERM
    finally:
        if owner.poll() is None:
            owner.kill()
    assert _live_members(set(pids.values())) == []
