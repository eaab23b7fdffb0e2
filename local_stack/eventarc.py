"""The local stack's Eventarc: Pub/Sub messages → CloudEvents POSTed to the functions, many at once.

In production Eventarc delivers a trigger's events to a gen2 function as CloudEvents, concurrently, and
retries with backoff on a non-2xx answer. The Pub/Sub emulator's own push delivery cannot stand in for it:
it pushes one message at a time per subscription (pull one, POST, wait, ack), which caps a burst at a few
messages per second. So each trigger here is a pull subscription that this process drains with up to
`--concurrency` deliveries in flight:

- `storage` triggers turn fake-gcs-server's notification into `google.cloud.storage.object.v1.finalized`
  (or deleted / metadataUpdated) with the object resource as data, as Eventarc does for Cloud Storage;
- `pubsub` triggers send `google.cloud.pubsub.topic.v1.messagePublished` with {message, subscription}.

A 2xx answer acknowledges the message; anything else (or no answer) hands it back to Pub/Sub after a
backoff that doubles from 1 s to 60 s, so it is redelivered with the same messageId (the functions'
idempotency key). The HTTP endpoint also accepts a Pub/Sub push body for a storage event and delivers it the
same way (the tests use it to redeliver an event on purpose).

    python -m local_stack.eventarc --port 8095 --pubsub-host 127.0.0.1:8085 \\
        --trigger storage:projects/P/subscriptions/S=http://127.0.0.1:8096/
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from healthcare_emulator.lifecycle import serve_until_stopped

EVENT_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 60.0  # seconds before a failed delivery is retried
DELIVERY_TIMEOUT = 600  # seconds, the functions' timeout
# After a pull that brought messages the next one waits, so a stream of messages is pulled a few at a time: the
# emulator answers a waiting pull with the first message that arrives, and each pull costs it several ms of
# CPU. The wait is PULL_GATHER_STEP after the first such pull and grows by a step with each pull that finds
# messages without waiting long, up to PULL_GATHER; a pull that waited (a gap in the stream) starts over. A
# message that finds a pull waiting, as in an idle system, is not delayed at all; one that follows another
# closely at most a step. Overridable through the environment (EVENTARC_PULL_GATHER, EVENTARC_ACK_GATHER).
PULL_GATHER = float(os.environ.get("EVENTARC_PULL_GATHER", "0.1"))  # seconds
PULL_GATHER_STEP = min(PULL_GATHER, 0.02)
STREAM_GAP = 0.1  # seconds a pull waited for its first message: the stream had a gap
# Acknowledgements gather this long, then one request sends them all.
ACK_GATHER = float(os.environ.get("EVENTARC_ACK_GATHER", "0.2"))  # seconds


class Connection:
    """One persistent HTTP/1.1 connection for one thread (http.client: a fraction of requests' per-call cost).

    A request on a reused connection that the server closed meanwhile is sent once more on a new one."""

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str | None, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (0, 1):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path or self.path, body, headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if not reused or attempt:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def post_json(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        status, data = self.post(path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        if not 200 <= status < 300:
            raise OSError(f"HTTP {status} from {path}: {data[:200]!r}")
        return json.loads(data or b"{}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def storage_event(message: dict[str, Any]) -> CloudEvent | None:
    """The CloudEvent Eventarc would send for this storage notification, or None for an unmapped event type."""
    attributes = message.get("attributes") or {}
    event_type = EVENT_TYPES.get(attributes.get("eventType", ""))
    if event_type is None:
        return None
    data = json.loads(base64.b64decode(message.get("data", "")) or b"{}")
    bucket = attributes.get("bucketId") or data.get("bucket", "")
    name = attributes.get("objectId") or data.get("name", "")
    return CloudEvent({
        "type": event_type,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "subject": f"objects/{name}",
        # messageId is stable across Pub/Sub redeliveries, as an Eventarc event id is across retries.
        "id": message.get("messageId") or message.get("message_id"),
        "time": message.get("publishTime") or message.get("publish_time"),
        "datacontenttype": "application/json",
    }, data)


def to_cloud_event(push_body: dict[str, Any]) -> CloudEvent | None:
    """A Pub/Sub push body of a storage notification → its CloudEvent (None for an unmapped event type)."""
    return storage_event(push_body["message"])


def pubsub_event(message: dict[str, Any], subscription: str, topic: str) -> CloudEvent:
    return CloudEvent({
        "type": PUBSUB_PUBLISHED,
        "source": f"//pubsub.googleapis.com/{topic}",
        "id": message.get("messageId"),
        "time": message.get("publishTime"),
        "datacontenttype": "application/json",
    }, {"message": {k: v for k, v in message.items() if k in ("data", "attributes", "messageId", "publishTime")},
        "subscription": subscription})


@dataclass(frozen=True)
class Trigger:
    kind: str  # "storage" or "pubsub"
    subscription: str  # projects/P/subscriptions/S
    target: str

    @classmethod
    def parse(cls, text: str) -> Trigger:
        kind, _, rest = text.partition(":")
        subscription, _, target = rest.partition("=")
        if kind not in ("storage", "pubsub") or "/subscriptions/" not in subscription or not target:
            raise argparse.ArgumentTypeError(f"expected storage|pubsub:projects/P/subscriptions/S=URL, got {text!r}")
        return cls(kind, subscription, target)


class Delivery:
    """Drains one trigger's subscription: long-polling pulls, up to `concurrency` POSTs in flight.

    Up to twice that many messages are held (in flight or queued here); under load a pull waits until a
    quarter of that room is free, so a backlog is pulled in chunks rather than one message per pull, and a
    stream of messages is pulled a few at a time (PULL_GATHER). Pulls, acknowledgements and deliveries go over
    persistent http.client connections (one per thread); `counts` is served at GET /stats.
    """

    def __init__(self, pubsub_host: str, trigger: Trigger, concurrency: int):
        self.trigger = trigger
        self.base = f"http://{pubsub_host}/v1/{trigger.subscription}"
        self.topic = ""
        self.capacity, self.refill = 2 * concurrency, max(1, concurrency // 2)
        self.held = 0
        self.room = threading.Condition()
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="deliver")
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: no proxy or netrc lookups on every request
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency + 4))
        self.path = urlsplit(self.base).path
        self.puller = Connection(self.base, 120)
        self.targets = threading.local()  # each delivering thread's connection to the target
        self.attempts: dict[str, int] = {}
        self.stopping = threading.Event()
        self.acks: list[str] = []  # acknowledged together: one request per ACK_GATHER, not one per message
        self.acks_ready = threading.Condition()
        # Requests to the emulator and messages through them, served at GET /stats (bench/eventarc_delivery.py).
        self.counts: Counter[str] = Counter()

    def run(self) -> None:
        self.topic = self.session.get(self.base, timeout=30).json().get("topic", "")
        threading.Thread(target=self._acknowledge_loop, daemon=True, name="acks").start()
        gather = 0.0
        while not self.stopping.is_set():
            with self.room:
                self.room.wait_for(lambda: self.held == 0 or self.capacity - self.held >= self.refill)
                free = min(100, self.capacity - self.held)
                self.held += free
            started = time.monotonic()
            try:
                received = self._pull(free)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                log(f"pull from {self.trigger.subscription} failed: {exc}")
                received = []
                time.sleep(1.0)
            self._release(free - len(received))
            for item in received:
                self.pool.submit(self._deliver, item)
            if not received or time.monotonic() - started > STREAM_GAP:
                gather = 0.0
            if 0 < len(received) < free:  # messages are arriving: let the next few gather into one pull
                gather = min(PULL_GATHER, gather + PULL_GATHER_STEP)
                time.sleep(gather)

    def _pull(self, count: int) -> list[dict[str, Any]]:
        # The emulator holds an empty pull open until a message arrives: no polling loop.
        received = list(self.puller.post_json(f"{self.path}:pull", {"maxMessages": count})
                        .get("receivedMessages", []))
        self.counts.update(pulls=1, pulled=len(received))
        return received

    def _post_event(self, event: CloudEvent) -> bool:
        connection = getattr(self.targets, "connection", None)
        if connection is None:
            connection = self.targets.connection = Connection(self.trigger.target, DELIVERY_TIMEOUT)
        headers, body = to_binary(event)
        try:
            status, _ = connection.post(None, body.encode() if isinstance(body, str) else body, headers)
        except (OSError, http.client.HTTPException) as exc:
            log(f"target {self.trigger.target} unreachable: {exc}")
            return False
        return 200 <= status < 300

    def _deliver(self, item: dict[str, Any]) -> None:
        try:
            message = item["message"]
            if self.trigger.kind == "storage":
                event = storage_event(message)
            else:
                event = pubsub_event(message, self.trigger.subscription, self.topic)
            ok = True if event is None else self._post_event(event)
            self._settle(item["ackId"], str(message.get("messageId")), ok)
        except Exception as exc:  # one bad message must not stop the trigger
            log(f"delivery of a message from {self.trigger.subscription} failed: {type(exc).__name__}: {exc}")
            self._settle(item["ackId"], str(item.get("message", {}).get("messageId")), False)
        finally:
            self._release(1)

    def _release(self, count: int) -> None:
        with self.room:
            self.held -= count
            self.room.notify()

    def _settle(self, ack_id: str, message_id: str, ok: bool) -> None:
        try:
            if ok:
                self.attempts.pop(message_id, None)
                with self.acks_ready:
                    self.acks.append(ack_id)
                    self.acks_ready.notify()
                return
            attempt = self.attempts[message_id] = self.attempts.get(message_id, 0) + 1
            backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
            # Back to Pub/Sub, redelivered once the new deadline passes.
            self.counts.update(modify_ack_deadlines=1)
            self.session.post(f"{self.base}:modifyAckDeadline",
                              json={"ackIds": [ack_id], "ackDeadlineSeconds": max(1, round(backoff))}, timeout=30)
        except requests.RequestException as exc:
            log(f"settling a message of {self.trigger.subscription} failed (redelivered later): {exc}")


    def _acknowledge_loop(self) -> None:
        connection = Connection(self.base, 30)
        while True:
            with self.acks_ready:
                self.acks_ready.wait_for(lambda: bool(self.acks))
            time.sleep(ACK_GATHER)  # let the acks of a burst gather
            with self.acks_ready:
                ack_ids, self.acks = self.acks, []
            self.counts.update(acknowledges=1, acknowledged=len(ack_ids))
            try:
                connection.post_json(f"{self.path}:acknowledge", {"ackIds": ack_ids})
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # unacknowledged: redelivered, and the functions are idempotent
                log(f"acknowledging {len(ack_ids)} messages of {self.trigger.subscription} failed: {exc}")


def deliver(session: requests.Session, target: str, event: CloudEvent) -> bool:
    headers, body = to_binary(event)
    try:
        response = session.post(target, headers=headers, data=body, timeout=DELIVERY_TIMEOUT)
    except requests.RequestException as exc:
        log(f"target {target} unreachable: {exc}")
        return False
    return 200 <= response.status_code < 300


def log(text: str) -> None:
    sys.stderr.write(f"eventarc-adapter: {text}\n")


class _Handler(BaseHTTPRequestHandler):
    server: _AdapterServer

    def do_GET(self) -> None:
        if self.path == "/stats":  # per subscription: pull/acknowledge requests and the messages through them
            body = json.dumps({d.trigger.subscription: dict(d.counts) for d in self.server.deliveries}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._answer(200)

    def do_POST(self) -> None:
        """A push body of a storage notification, delivered to the storage trigger's target now."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = to_cloud_event(json.loads(self.rfile.read(length)))
        except (ValueError, KeyError) as exc:
            # A malformed push will not get better on redelivery: acknowledge it, say why in the log.
            log(f"dropped malformed push: {exc}")
            self._answer(204)
            return
        if event is None or self.server.storage_target is None:
            self._answer(204)
            return
        self._answer(204 if deliver(self.server.session, self.server.storage_target, event) else 503)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        log(format % args)


class _AdapterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], storage_target: str | None):
        super().__init__(address, _Handler)
        self.storage_target = storage_target
        self.session = requests.Session()
        self.session.trust_env = False
        self.deliveries: list[Delivery] = []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.eventarc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pubsub-host", required=True, help="the Pub/Sub emulator, HOST:PORT")
    parser.add_argument("--trigger", type=Trigger.parse, action="append", default=[],
                        help="KIND:projects/P/subscriptions/S=URL (KIND storage or pubsub); repeatable")
    parser.add_argument("--concurrency", type=int, default=80, help="deliveries in flight per trigger")
    args = parser.parse_args(argv)
    storage = next((t.target for t in args.trigger if t.kind == "storage"), None)
    server = _AdapterServer(("127.0.0.1", args.port), storage)
    for trigger in args.trigger:
        delivery = Delivery(args.pubsub_host, trigger, args.concurrency)
        server.deliveries.append(delivery)
        threading.Thread(target=delivery.run, daemon=True, name=f"trigger {trigger.subscription}").start()
    return serve_until_stopped(server.serve_forever, server.server_close)


if __name__ == "__main__":
    sys.exit(main())
