"""CPU per message of the local stack's Eventarc adapter and of the Pub/Sub emulator (printed, not a test).

    python bench/eventarc_delivery.py [--count 2000] [--rate 60] [--delay 0.02] [--lone 50]

Runs gcloud's Pub/Sub emulator, a stand-in function (an HTTP server in this process answering 204 after
`--delay` seconds) and `python -m local_stack.eventarc` with one pubsub trigger, all on 127.0.0.1, then:

- lone: `--lone` messages one at a time, each published 0.25 s after the previous one was delivered (an idle
  system: the publish → delivery latency a single upload sees);
- steady: `--count` messages published one per request at `--rate` per second;
- burst: `--count` messages published one per request from 8 threads as fast as they go.

For each: messages/s delivered, publish → delivery latency (p50/p99, at the function), CPU ms per message of
the adapter and of the emulator (utime + stime of the process tree, /proc), and the adapter's pull and
acknowledge requests per message (its GET /stats). The emulator's CPU includes handling the publishes; a
calibration run publishes the same way to a subscription nobody pulls and prints that share separately
(`--no-calibrate` skips it). A fresh topic, subscription and adapter per phase, after a warm-up (the JVM's JIT).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local_stack.processes import cpu_seconds
from local_stack.pubsub_emulator import PubSubEmulator
from local_stack.stack import EventarcAdapter

PROJECT = "bench-project"
WARM_UP = 300  # messages through the emulator and the adapter before anything is measured


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))] if ordered else 0.0


class Sink(ThreadingHTTPServer):
    """The function: records each messagePublished CloudEvent's publish → arrival time, answers 204."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, delay: float):
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.delay = delay
        self.lock = threading.Lock()
        self.latency: dict[str, float] = {}  # messageId → seconds from publish to arrival
        self.deliveries = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"


class _SinkHandler(BaseHTTPRequestHandler):
    server: Sink
    protocol_version = "HTTP/1.1"  # keep-alive, as functions-framework's gunicorn

    def do_POST(self) -> None:
        arrived = time.monotonic()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        message = body["message"]
        with self.server.lock:
            self.server.deliveries += 1
            self.server.latency.setdefault(message["messageId"], arrived - float(message["attributes"]["t"]))
        time.sleep(self.server.delay)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Bench:
    def __init__(self, pubsub: PubSubEmulator, sink: Sink, concurrency: int):
        self.pubsub, self.sink, self.concurrency = pubsub, sink, concurrency
        self.http = requests.Session()
        self.http.trust_env = False
        self.emulator_pid = pubsub._process.pid

    def subscription(self) -> tuple[str, str]:
        base = f"http://{self.pubsub.host}/v1/projects/{PROJECT}"
        topic, subscription = f"t-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
        self.http.put(f"{base}/topics/{topic}", json={}, timeout=30).raise_for_status()
        self.http.put(f"{base}/subscriptions/{subscription}", timeout=30, json={
            "topic": f"projects/{PROJECT}/topics/{topic}", "ackDeadlineSeconds": 600}).raise_for_status()
        return f"projects/{PROJECT}/topics/{topic}", f"projects/{PROJECT}/subscriptions/{subscription}"

    def publish(self, topic: str, session: requests.Session | None = None) -> None:
        message = {"data": base64.b64encode(b"/studies/1.2.3/series/4.5.6/instances/7.8.9").decode(),
                   "attributes": {"action": "StoreInstances", "t": repr(time.monotonic())}}
        (session or self.http).post(f"http://{self.pubsub.host}/v1/{topic}:publish", json={"messages": [message]},
                                    timeout=30).raise_for_status()

    def publish_pattern(self, topic: str, mode: str, count: int, rate: float) -> None:
        if mode == "lone":
            for _ in range(count):
                before = len(self.sink.latency)
                self.publish(topic)
                self.wait_delivered(before + 1, quiet=True)
                time.sleep(0.25)  # the pace of one upload at a time through the local stack
        elif mode == "steady":
            start = time.monotonic()
            for n in range(count):
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
                self.publish(topic)
        else:
            local = threading.local()

            def one(_: int) -> None:
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                    local.session.trust_env = False
                self.publish(topic, local.session)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(one, range(count)))

    def wait_delivered(self, total: int, quiet: bool = False, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sink.latency) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.sink.latency)} of {total} messages delivered")
            time.sleep(0.001 if quiet else 0.02)

    def calibrate(self, mode: str, count: int, rate: float) -> float:
        """Emulator CPU seconds for publishing `count` messages this way with nobody pulling."""
        topic, subscription = self.subscription()
        before = cpu_seconds(self.emulator_pid)
        if mode == "lone":  # the lone phase publishes only after each delivery: pace it like ~that
            for _ in range(count):
                self.publish(topic)
                time.sleep(0.3)
        else:
            self.publish_pattern(topic, mode, count, rate)
        spent = cpu_seconds(self.emulator_pid) - before
        self.http.delete(f"http://{self.pubsub.host}/v1/{subscription}", timeout=30)
        return spent

    def phase(self, mode: str, count: int, rate: float, calibrate: bool) -> None:
        topic, subscription = self.subscription()
        with EventarcAdapter(self.pubsub.host, [f"pubsub:{subscription}={self.sink.url}"]) as adapter:
            adapter_pid = adapter._process.pid
            # Warm-up (adapter imports, connections, the JVM's JIT on this path), not measured.
            self.sink.latency.clear()
            self.publish_pattern(topic, "burst", WARM_UP, rate)
            self.wait_delivered(WARM_UP)
            time.sleep(0.5)  # the warm-up's acks
            stats_before = self.stats(adapter.url, subscription)
            self.sink.latency.clear()
            deliveries_before = self.sink.deliveries
            cpu_before = cpu_seconds(adapter_pid), cpu_seconds(self.emulator_pid)
            start = time.monotonic()
            self.publish_pattern(topic, mode, count, rate)
            self.wait_delivered(count)
            elapsed = time.monotonic() - start
            time.sleep(0.1)  # the last acks
            adapter_cpu = cpu_seconds(adapter_pid) - cpu_before[0]
            emulator_cpu = cpu_seconds(self.emulator_pid) - cpu_before[1]
            stats = self.stats(adapter.url, subscription)
        counts = {k: stats.get(k, 0) - stats_before.get(k, 0) for k in stats}
        latency = list(self.sink.latency.values())
        extra = self.sink.deliveries - deliveries_before - count
        print(f"\n{mode}: {count} messages" + (f" published at {rate:g}/s" if mode == "steady" else "")
              + f", delivered in {elapsed:.1f} s: {count / elapsed:.0f} messages/s"
              + (f" ({extra} redelivered)" if extra else ""))
        print(f"  publish → delivery   p50 {1000 * percentile(latency, 50):6.1f} ms   p99"
              f" {1000 * percentile(latency, 99):6.1f} ms   max {1000 * max(latency):6.1f} ms")
        print(f"  CPU per message      adapter {1000 * adapter_cpu / count:5.2f} ms   emulator"
              f" {1000 * emulator_cpu / count:5.2f} ms", end="")
        if calibrate:
            publishing = self.calibrate(mode, count, rate)
            print(f" (of which publishing {1000 * publishing / count:.2f} ms, the rest"
                  f" {1000 * (emulator_cpu - publishing) / count:.2f} ms)")
        else:
            print()
        print(f"  requests per message pulls {counts.get('pulls', 0) / count:.3f}"
              f" ({counts.get('pulled', 0) / max(1, counts.get('pulls', 0)):.1f} messages each)"
              f"   acknowledges {counts.get('acknowledges', 0) / count:.3f}"
              f" ({counts.get('acknowledged', 0) / max(1, counts.get('acknowledges', 0)):.1f} each)"
              f"   modifyAckDeadline {counts.get('modify_ack_deadlines', 0)}")

    def stats(self, url: str, subscription: str) -> dict[str, int]:
        return dict(self.http.get(f"{url}/stats", timeout=30).json().get(subscription, {}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="messages in the steady and burst phases")
    parser.add_argument("--rate", type=float, default=60.0, help="messages/s in the steady phase (default 60)")
    parser.add_argument("--delay", type=float, default=0.02, help="the function's answer time, s (default 0.02)")
    parser.add_argument("--lone", type=int, default=50, help="messages in the lone phase (default 50; 0 skips)")
    parser.add_argument("--phases", default="lone,steady,burst", help="comma-separated subset, in order")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="skip measuring the emulator's CPU for the publishes alone")
    args = parser.parse_args()
    sink = Sink(args.delay)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        with PubSubEmulator() as pubsub:
            bench = Bench(pubsub, sink, args.concurrency)
            print(f"Pub/Sub emulator {pubsub.host}, function delay {1000 * args.delay:g} ms, {os.cpu_count()} cores")
            for mode in args.phases.split(","):
                bench.phase(mode, args.lone if mode == "lone" else args.count, args.rate, args.calibrate)
    finally:
        sink.shutdown()
        sink.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
