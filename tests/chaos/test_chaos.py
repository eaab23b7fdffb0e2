"""The chaos suite: the whole local stack, a burst of uploads, one fault per run, and then exactly one row per
stored instance and every bad file dead-lettered with a reason.

Each scenario is a row of issue 15's table: kill -9 of each component (the supervisor restarts it, as Cloud
Run would), a fault proxy in front of the Healthcare emulator (503/429/latency before forwarding, answers
lost after forwarding), a Pub/Sub emulator restart, poison object names. Loopback only; every wait is
bounded (SETTLE_BOUND).

`make chaos` runs every scenario with 800 uploads and writes the table (CHAOS_REPORT); `make test` runs the
SUBSET with CHAOS_UPLOADS (default 40) uploads each.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from dicom_samples import synthetic_instance
from local_stack.fault_proxy import FaultProxy, Rule
from local_stack.pubsub_emulator import launcher_path
from local_stack.stack import DEAD_LETTER_SUFFIX, NOTIFICATION_TOPIC, STORAGE_TOPIC, UPLOAD_BUCKET, LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(launcher_path() is None, reason="the Pub/Sub emulator is not installed")]

UPLOADS = int(os.environ.get("CHAOS_UPLOADS", "40"))
FULL = os.environ.get("CHAOS_FULL") == "1"
SETTLE_BOUND = float(os.environ.get("CHAOS_SETTLE_BOUND", "300"))  # seconds after the last upload
# The platform's timings, shortened so a run settles within minutes: a claim is stale after 20 s (in
# production: longer than the function's timeout), an unknown outcome is decided 5 s after it arose, and
# the reconciler runs every 5 s (terraform: a Cloud Scheduler job).
FUNCTION_ENV = {"STALE_CLAIM_SECONDS": "20", "RECONCILE_UNKNOWN_AFTER_SECONDS": "5"}
RECONCILE_EVERY = 5.0


@dataclass
class Run:
    stack: LocalStack
    proxy: FaultProxy
    uploaded: int = 0
    notes: list[str] = field(default_factory=list)


def kill_9(name: str) -> Callable[[Run], None]:
    def fault(run: Run) -> None:
        (component,) = [c for c in run.stack.components if c.name == name]
        assert component._process is not None
        os.killpg(component._process.pid, signal.SIGKILL)  # the whole group: gunicorn's worker, the JVM
        run.notes.append(f"kill -9 {name} after {run.uploaded} uploads")

    return fault


def kill_9_export_in_flight(run: Run) -> None:
    """kill -9 the export function while the proxy holds its dicomStores.export call (then forwards it)."""
    deadline = time.monotonic() + 60
    while run.proxy.counts.get("hold", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.proxy.counts.get("hold") == 1, "no export call reached the proxy"
    kill_9("export_dicom_metadata")(run)


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Run], None] | None = None
    rules: tuple[Rule, ...] = ()
    poison: int = 0  # uploads with non-Latin-1 names: must be imported
    bad: int = 0  # non-DICOM files named .dcm: must be dead-lettered with a reason
    fault_at: float = 0.5  # share of the uploads done when the fault strikes
    in_subset: bool = False  # also run by `make test`


SCENARIOS = [
    Scenario("none"),
    Scenario("kill -9 import function mid-burst", kill_9("import_dicom_object")),
    Scenario("kill -9 export function mid-burst", kill_9("export_dicom_metadata")),
    Scenario("kill -9 export function while its dicomStores.export is in flight", kill_9_export_in_flight,
             (Rule("hold", "POST", ":export", latency=2.0, times=1),), fault_at=0.0, in_subset=True),
    Scenario("dicomStores.export answers lost after forwarding (15% 503, 10% dropped)", None,
             (Rule("503 after", "POST", ":export", after=503, rate=0.15),
              Rule("dropped", "POST", ":export", after="drop", rate=0.1)), in_subset=True),
    Scenario("10% 503 + 10% 429 + 10% 1 s latency before the API", None,
             (Rule("503 before", before=503, rate=0.1), Rule("429 before", before=429, rate=0.1),
              Rule("latency", latency=1.0, rate=0.1))),
    Scenario("Pub/Sub emulator restarted mid-burst", kill_9("pubsub-emulator"), in_subset=True),
    Scenario("kill -9 Healthcare emulator mid-burst", kill_9("healthcare-emulator")),
    Scenario("kill -9 fake-gcs-server mid-burst", kill_9("fake-gcs-server")),
    Scenario("kill -9 Eventarc adapter mid-burst", kill_9("eventarc-adapter")),
    Scenario("poison names (漢字) and non-DICOM files", poison=10, bad=5, in_subset=True),
]


def _upload_with_retries(bucket: Any, name: str, data: bytes) -> None:
    """An uploader retries as gsutil does: fake-gcs-server may be restarting."""
    deadline = time.monotonic() + 120
    while True:
        try:
            bucket.blob(name).upload_from_string(data, content_type="application/dicom", timeout=30)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _dead_letter_topic_messages(stack: LocalStack) -> int:
    """Messages the Eventarc adapter sent to the triggers' dead-letter topics (none is expected)."""
    total = 0
    for topic in (STORAGE_TOPIC, NOTIFICATION_TOPIC):
        url = f"http://{stack.pubsub.host}/v1/projects/{stack.names.project}/subscriptions/{topic}{DEAD_LETTER_SUFFIX}"
        response = requests.post(f"{url}:pull", json={"maxMessages": 1000, "returnImmediately": True}, timeout=30)
        total += len(response.json().get("receivedMessages", [])) if response.ok else 0
    return total


def _observe(stack: LocalStack) -> dict[str, int]:
    """Counts now; while a component the counts come from is down (being restarted), waits for it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return _counts(stack)
        except (requests.RequestException, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _counts(stack: LocalStack) -> dict[str, int]:
    counts = stack.row_counts()
    return {"store": stack.instance_count(), "rows": sum(counts.values()), "distinct": len(counts),
            "dead letters": len(stack.dead_letters("import"))}


def run_scenario(scenario: Scenario, uploads: int) -> dict[str, Any]:
    proxy = FaultProxy("", list(scenario.rules))

    def front(url: str) -> str:
        proxy.upstream = url
        return proxy.start().url if not proxy.url else proxy.url

    with LocalStack(reconcile_every=RECONCILE_EVERY, function_env=FUNCTION_ENV, healthcare_front=front,
                    max_delivery_attempts=5) as stack:
        try:
            return _burst(stack, proxy, scenario, uploads)
        finally:
            proxy.stop()


def _burst(stack: LocalStack, proxy: FaultProxy, scenario: Scenario, uploads: int) -> dict[str, Any]:
    run = Run(stack, proxy)
    tag = uuid.uuid4().hex[:8]
    files = [(f"incoming/{tag}/{n:05d}.dcm", synthetic_instance(seed=n).data) for n in range(uploads)]
    files += [(f"incoming/{tag}/漢字-{n}.dcm", synthetic_instance(seed=100_000 + n).data)
              for n in range(scenario.poison)]
    bad = [f"incoming/{tag}/not-dicom-{n}.dcm" for n in range(scenario.bad)]
    files += [(name, b"this is not a DICOM file " * 20) for name in bad]
    expected = uploads + scenario.poison
    bucket = stack.storage_client().bucket(UPLOAD_BUCKET)
    fault_after = int(len(files) * scenario.fault_at)
    faulted = threading.Event()
    fault_thread: threading.Thread | None = None
    lock = threading.Lock()

    def upload(item: tuple[str, bytes]) -> None:
        nonlocal fault_thread
        _upload_with_retries(bucket, *item)
        with lock:
            run.uploaded += 1
            strike = scenario.fault is not None and run.uploaded >= fault_after and not faulted.is_set()
            if strike:
                faulted.set()
                fault_thread = threading.Thread(target=scenario.fault, args=(run,))
                fault_thread.start()

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, files))
    uploaded_at = time.monotonic()
    if fault_thread is not None:
        fault_thread.join(120)
    deadline = uploaded_at + SETTLE_BOUND
    seen = _observe(stack)
    while not (seen["store"] == expected and seen["rows"] == expected and seen["distinct"] == expected
               and seen["dead letters"] == scenario.bad) and time.monotonic() < deadline:
        time.sleep(1.0)
        seen = _observe(stack)
    settled = time.monotonic() - uploaded_at
    stack.reconcile()  # one more pass once settled: it must find nothing to do, and add no row
    after = _observe(stack)
    letters = {str(d.get("object")): str(d.get("reason", "")) for d in stack.dead_letters("import")}
    result = {"scenario": scenario.name, "uploads": len(files), "expected": expected, **after,
              "duplicates": after["rows"] - after["distinct"], "settled (s)": round(settled, 1),
              "burst (s)": round(uploaded_at - started, 1), "dead-letter topics": _dead_letter_topic_messages(stack),
              "faults": dict(proxy.counts), "restarts": dict(stack.supervisor.restarts if stack.supervisor else {}),
              "notes": run.notes + (stack.supervisor.notes if stack.supervisor else []),
              "bad": [f"gs://{UPLOAD_BUCKET}/{name}" for name in bad], "letters": letters}
    _append_report(result)
    return result


def _append_report(result: dict[str, Any]) -> None:
    path = os.environ.get("CHAOS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({k: v for k, v in result.items() if k not in ("bad", "letters")},
                                 ensure_ascii=False) + "\n")


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if FULL or s.in_subset], ids=lambda s: s.name)
def test_scenario(scenario: Scenario) -> None:
    result = run_scenario(scenario, UPLOADS)
    summary = {k: result[k] for k in ("expected", "store", "rows", "distinct", "dead letters", "settled (s)",
                                      "faults", "restarts", "notes")}
    assert result["store"] == result["expected"], summary
    assert result["rows"] == result["store"], summary
    assert result["distinct"] == result["rows"], summary
    for name in result["bad"]:  # every bad file dead-lettered, with a reason that says why
        assert "DICM" in result["letters"].get(name, ""), (name, result["letters"])
    assert result["dead letters"] == len(result["bad"]), summary
    assert result["dead-letter topics"] == 0, summary  # no good message given up on
    if scenario.rules:  # the fault really happened
        assert sum(result["faults"].values()) > 0, summary
    if scenario.fault is not None:
        assert result["notes"], summary


def write_table(path: Path) -> str:
    """The report's JSON lines as the issue's table (Markdown)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    head = "| fault | uploads | store | rows | distinct | duplicates | dead letters | settled (s) | faults / restarts |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        extra = ", ".join(f"{k} {v}" for k, v in {**r["faults"], **r["restarts"]}.items()) or "—"
        lines.append(f"| {r['scenario']} | {r['uploads']} | {r['store']} | {r['rows']} | {r['distinct']} |"
                     f" {r['duplicates']} | {r['dead letters']} | {r['settled (s)']} | {extra} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tests.chaos.test_chaos REPORT: print the table
    import sys

    print(write_table(Path(sys.argv[1])))
