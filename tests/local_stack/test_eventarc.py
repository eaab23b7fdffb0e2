"""The local stack's Eventarc (local_stack/eventarc.py) against the real Pub/Sub emulator: messages become
CloudEvents, many are in flight at once (the emulator's own push sends one at a time), a failed delivery is
retried with the same event id, a delivered one is acknowledged and never sent again.

The receiving end is a small recording HTTP server standing in for a function: the one fake here."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from local_stack.pubsub_emulator import PubSubEmulator, launcher_path
from local_stack.stack import EventarcAdapter

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(launcher_path() is None, reason="the Pub/Sub emulator is not installed")]
PROJECT = "test-project"


class Recorder(ThreadingHTTPServer):
    """Records each CloudEvent POSTed to it; answers 500 to the first `fail_first` requests; holds each
    request `hold` seconds so overlapping deliveries can be counted."""

    daemon_threads = True

    def __init__(self, hold: float = 0.0, fail_first: int = 0):
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.hold, self.fail_first = hold, fail_first
        self.events: list[tuple[dict[str, str], Any]] = []
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"


class _RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ce = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("ce-")}
        with self.server.lock:
            self.server.events.append((ce, body))
            self.server.in_flight += 1
            self.server.peak = max(self.server.peak, self.server.in_flight)
            fail = len(self.server.events) <= self.server.fail_first
        time.sleep(self.server.hold)
        with self.server.lock:
            self.server.in_flight -= 1
        self.send_response(500 if fail else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder(request) -> Iterator[Recorder]:
    server = Recorder(**getattr(request, "param", {}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _subscription(pubsub: PubSubEmulator) -> tuple[str, str]:
    base = f"http://{pubsub.host}/v1/projects/{PROJECT}"
    topic, subscription = f"t-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    requests.put(f"{base}/topics/{topic}", json={}, timeout=30).raise_for_status()
    requests.put(f"{base}/subscriptions/{subscription}", timeout=30,
                 json={"topic": f"projects/{PROJECT}/topics/{topic}", "ackDeadlineSeconds": 600}).raise_for_status()
    return f"projects/{PROJECT}/topics/{topic}", f"projects/{PROJECT}/subscriptions/{subscription}"


def _publish(pubsub: PubSubEmulator, topic: str, messages: list[dict[str, Any]]) -> list[str]:
    response = requests.post(f"http://{pubsub.host}/v1/{topic}:publish", json={"messages": messages}, timeout=30)
    response.raise_for_status()
    return list(response.json()["messageIds"])


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("recorder", [{"hold": 0.3}], indirect=True)
def test_a_burst_is_delivered_concurrently_as_message_published_events(pubsub, recorder) -> None:
    topic, subscription = _subscription(pubsub)
    with EventarcAdapter(pubsub.host, [f"pubsub:{subscription}={recorder.url}"]):
        ids = _publish(pubsub, topic, [{"data": base64.b64encode(f"/studies/{n}".encode()).decode(),
                                        "attributes": {"action": "StoreInstances"}} for n in range(40)])
        _wait(lambda: len(recorder.events) >= 40, "40 deliveries")
        time.sleep(1.5)  # acknowledged ones are not sent again
    assert sorted(ce["ce-id"] for ce, _ in recorder.events) == sorted(ids)
    ce, body = recorder.events[0]
    assert ce["ce-type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert ce["ce-source"] == f"//pubsub.googleapis.com/{topic}"
    assert body["subscription"] == subscription
    assert body["message"]["attributes"] == {"action": "StoreInstances"}
    assert base64.b64decode(body["message"]["data"]).decode().startswith("/studies/")
    assert recorder.peak > 2  # the emulator's own push never has more than one or two in flight


@pytest.mark.parametrize("recorder", [{"fail_first": 1}], indirect=True)
def test_storage_notifications_become_finalized_events_and_failures_are_retried(pubsub, recorder) -> None:
    topic, subscription = _subscription(pubsub)
    obj = {"bucket": "landing", "name": "in/a.dcm", "generation": "7", "size": "10"}
    message = {"data": base64.b64encode(json.dumps(obj).encode()).decode(),
               "attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": "landing", "objectId": "in/a.dcm"}}
    with EventarcAdapter(pubsub.host, [f"storage:{subscription}={recorder.url}"]):
        (first,) = _publish(pubsub, topic, [message])  # the function's first answer is a 500
        _wait(lambda: len(recorder.events) >= 2, "the retry after a failed delivery")
        time.sleep(2.5)  # delivered: no third attempt
    assert [ce["ce-id"] for ce, _ in recorder.events] == [first, first]
    ce, body = recorder.events[-1]
    assert ce["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert ce["ce-source"] == "//storage.googleapis.com/projects/_/buckets/landing"
    assert ce["ce-subject"] == "objects/in/a.dcm"
    assert body == obj


def _stats(adapter: EventarcAdapter, subscription: str) -> dict[str, int]:
    return dict(requests.get(f"{adapter.url}/stats", timeout=30).json()[subscription])


def _message(n: int) -> dict[str, Any]:
    return {"data": base64.b64encode(f"/studies/{n}".encode()).decode(), "attributes": {"action": "StoreInstances"}}


def test_a_stream_is_pulled_and_acknowledged_a_few_messages_at_a_time(pubsub, recorder) -> None:
    topic, subscription = _subscription(pubsub)
    with EventarcAdapter(pubsub.host, [f"pubsub:{subscription}={recorder.url}"]) as adapter:
        ids = []
        for n in range(60):  # one message every 10 ms, each alone in its publish request
            ids += _publish(pubsub, topic, [_message(n)])
            time.sleep(0.01)
        _wait(lambda: len(recorder.events) >= 60, "60 deliveries")
        _wait(lambda: _stats(adapter, subscription).get("acknowledged", 0) >= 60, "60 acknowledgements")
        stats = _stats(adapter, subscription)
    assert sorted(ce["ce-id"] for ce, _ in recorder.events) == sorted(ids)
    assert stats["pulled"] == 60
    assert stats["pulls"] < 45, stats  # not one pull per message: the next pull waits for a few to gather
    assert stats["acknowledges"] < 20, stats  # acknowledged in batches


def test_a_lone_message_is_delivered_without_waiting_for_others(pubsub, recorder) -> None:
    topic, subscription = _subscription(pubsub)
    with EventarcAdapter(pubsub.host, [f"pubsub:{subscription}={recorder.url}"]):
        for n in range(3):  # the first right after start, the others after a delivery (the pull waited since)
            started = time.monotonic()
            _publish(pubsub, topic, [_message(n)])
            _wait(lambda n=n: len(recorder.events) > n, f"delivery {n}")
            assert time.monotonic() - started < 0.5
            time.sleep(0.2)


class KeepAliveDropper(Recorder):
    """Answers HTTP/1.1 without "Connection: close", then closes the connection: the client's next request
    on it finds it gone, as when a server drops an idle keep-alive connection."""


class _DroppingHandler(_RecorderHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        super().do_POST()
        self.close_connection = True


def test_a_dropped_keep_alive_connection_to_the_target_is_reopened(pubsub) -> None:
    server = KeepAliveDropper()
    server.RequestHandlerClass = _DroppingHandler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    topic, subscription = _subscription(pubsub)
    try:
        with EventarcAdapter(pubsub.host, [f"pubsub:{subscription}={server.url}"]) as adapter:
            ids = []
            for n in range(10):  # one at a time, so the delivering threads reuse their connections
                ids += _publish(pubsub, topic, [_message(n)])
                _wait(lambda n=n: len(server.events) > n, f"delivery {n}")
            time.sleep(1.5)
            stats = _stats(adapter, subscription)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(ce["ce-id"] for ce, _ in server.events) == sorted(ids)  # each once, none failed
    assert stats.get("modify_ack_deadlines", 0) == 0
