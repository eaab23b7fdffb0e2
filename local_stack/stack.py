"""The whole pipeline offline: every component a child process on a free 127.0.0.1 port, wired like production.

    upload → fake-gcs-server ─(finalize event)→ Pub/Sub topic gcs-events ─(pull)→ eventarc adapter
      ─(storage.object.v1.finalized CloudEvent)→ import function → Healthcare emulator (dicomStores.import)
      ─(notification, sendForBulkImport)→ Pub/Sub topic dicom-notifications ─(pull)→ eventarc adapter
      ─(pubsub.topic.v1.messagePublished CloudEvent)→ export function
      → dicomStores.export to BigQuery (the emulator's local DuckDB warehouse)

`with LocalStack() as stack:` starts everything, creates the buckets, topics, subscriptions, dataset and
DICOM store, and stops every process it started on exit (also on Ctrl-C: KeyboardInterrupt unwinds the
with-block). Readiness is polled, never slept for; a component that fails names itself with its log tail.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

from dicom_pipeline.names import DicomStoreName

from .fake_gcs import FakeGcsServer, ram_directory
from .processes import ManagedServer, wait_until_ready
from .pubsub_emulator import PubSubEmulator

REPO = Path(__file__).resolve().parents[1]
PROJECT, LOCATION, DATASET, STORE = "local-project", "us-central1", "local-dataset", "local-store"
UPLOAD_BUCKET, STAGING_BUCKET = "dicom-landing", "dicom-staging"
STORAGE_TOPIC, NOTIFICATION_TOPIC = "gcs-events", "dicom-notifications"
BQ_DATASET, BQ_TABLE = "dicom_metadata", "instances"
IMPORT_SUBSCRIPTION, EXPORT_SUBSCRIPTION = "gcs-events-to-import", "notifications-to-export"
# Requests each function serves at once, and deliveries the adapter keeps in flight per trigger: the
# production default (terraform function_concurrency); more would only queue in gunicorn.
FUNCTION_CONCURRENCY = 80


def http_answers(url: str) -> Callable[[], bool]:
    """Ready once anything answers HTTP (a CloudEvent function answers a bare GET with 4xx, which is fine)."""
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback URL we built
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return check


class _AnswersServer(ManagedServer):
    """A ManagedServer whose readiness is 'answers HTTP at all' rather than '2xx'."""

    def start(self) -> Self:
        from .processes import start

        self._process = start(self.command(), self.log, self.environment())
        wait_until_ready(http_answers(self.ready_url()), self._process, self.name, self.log, 60)
        return self


class HealthcareEmulatorProcess(ManagedServer):
    name = "healthcare-emulator"

    def __init__(self, data_dir: Path, storage_emulator_host: str, pubsub_emulator_host: str):
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self._env = {"STORAGE_EMULATOR_HOST": storage_emulator_host, "PUBSUB_EMULATOR_HOST": pubsub_emulator_host}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "healthcare_emulator", "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", str(self.data_dir)]

    def environment(self) -> dict[str, str]:
        return {**self._env, "PYTHONPATH": str(REPO)}

    def ready_url(self) -> str:
        return f"{self.url}/v1/projects/{PROJECT}/locations/{LOCATION}/datasets"


class FunctionServer(_AnswersServer):
    """One Cloud Function under functions-framework (gunicorn), as the gen2 runtime runs it."""

    def __init__(self, target: str, env: dict[str, str]):
        self.name = target
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.target = target
        self._env = env

    def command(self) -> list[str]:
        launcher = Path(sys.executable).with_name("functions-framework")
        argv = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "functions_framework"]
        return [*argv, "--target", self.target, "--source", str(REPO / "main.py"), "--signature-type",
                "cloudevent", "--host", "127.0.0.1", "--port", str(self.port)]

    def environment(self) -> dict[str, str]:
        # THREADS: gunicorn threads, i.e. the requests one instance serves at once: gen2's concurrency,
        # function_concurrency in terraform (80). Handlers mostly wait on the API, so threads are cheap, and
        # both functions batch what arrives together: a burst's throughput is requests in flight divided
        # by the time each waits for its batch's operation (bench-local; figures in bench/README.md).
        return {"THREADS": str(FUNCTION_CONCURRENCY), **self._env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

    def ready_url(self) -> str:
        return f"{self.url}/"


class _UploadBucketGcs(FakeGcsServer):
    """Events for the upload bucket only, as the production trigger: staged copies in the staging bucket are
    `.dcm` too and must not be imported a second time."""

    def command(self) -> list[str]:
        return [*super().command(), "-event.bucket", UPLOAD_BUCKET]


class EventarcAdapter(ManagedServer):
    """Delivers the triggers' subscriptions to the functions as CloudEvents, concurrently (see eventarc.py)."""

    name = "eventarc-adapter"

    def __init__(self, pubsub_host: str, triggers: list[str]):
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pubsub_host = pubsub_host
        self.triggers = triggers

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "local_stack.eventarc", "--port", str(self.port), "--pubsub-host",
                self.pubsub_host, "--concurrency", str(FUNCTION_CONCURRENCY)]
        for trigger in self.triggers:
            argv += ["--trigger", trigger]
        return argv

    def environment(self) -> dict[str, str]:
        return {"PYTHONPATH": str(REPO)}

    def ready_url(self) -> str:
        return f"{self.url}/"


@dataclass(frozen=True)
class Names:
    project: str = PROJECT
    location: str = LOCATION
    dataset: str = DATASET
    store: str = STORE

    @property
    def store_name(self) -> str:
        return str(DicomStoreName(self.project, self.location, self.dataset, self.store))

    @property
    def table(self) -> str:
        return f"bq://{self.project}.{BQ_DATASET}.{BQ_TABLE}"


class LocalStack:
    """Start with `with LocalStack() as stack:`; `stack.endpoints()` and `stack.env()` say how to reach it."""

    def __init__(self, data_dir: str | Path | None = None, operation_wait_seconds: int = 60):
        # A throw-away stack keeps its state in RAM where it can (/dev/shm): creating each instance's files on
        # a disk filesystem cost up to a tenth of the emulator's CPU in a burst. Given a data_dir, it is used.
        self._tempdir = None if data_dir else tempfile.TemporaryDirectory(prefix="local-stack-", dir=ram_directory())
        self.data_dir = Path(data_dir or self._tempdir.name)  # type: ignore[union-attr]
        self.names = Names()
        self.operation_wait_seconds = operation_wait_seconds
        self.components: list[ManagedServer] = []
        self.pubsub: PubSubEmulator
        self.gcs: FakeGcsServer
        self.healthcare: HealthcareEmulatorProcess
        self.import_function: FunctionServer
        self.export_function: FunctionServer
        self.adapter: EventarcAdapter
        self._previous_sigterm: Any = None  # the SIGTERM handler to put back on stop()

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        self._unwind_on_sigterm()
        try:
            self._start()
        except BaseException:
            self.stop()  # a half-started stack leaves nothing behind either
            raise
        return self

    def _unwind_on_sigterm(self) -> None:
        """SIGTERM (timeout, a cancelled CI job, kill) unwinds like Ctrl-C, so stop() runs and ends every child.

        By default SIGTERM ends Python at once and the children, each in its own session, would live on.
        Only from the main thread, and only when nobody else handles SIGTERM (`local_stack up` does).
        """
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def _start(self) -> None:
        self.pubsub = self._run(PubSubEmulator())
        # fake-gcs-server drops events for a topic that does not exist yet: create it before any upload.
        self._pubsub_put(f"topics/{STORAGE_TOPIC}", {})
        self._pubsub_put(f"topics/{NOTIFICATION_TOPIC}", {})
        # The filesystem backend: a burst leaves thousands of objects (uploads and the functions' records),
        # and the memory backend's cost per request grows with them (see FakeGcsServer).
        self.gcs = self._run(_UploadBucketGcs(pubsub_project=self.names.project, pubsub_topic=STORAGE_TOPIC,
                                              env={"PUBSUB_EMULATOR_HOST": self.pubsub.host}, backend="filesystem",
                                              https=True))  # https for gsutil (see FakeGcsServer)
        self.boto_config = self.gcs.write_boto_config(self.data_dir / "gsutil.boto", self.names.project)
        hc_dir = self.data_dir / "healthcare"
        hc_dir.mkdir(parents=True, exist_ok=True)
        self.healthcare = self._run(HealthcareEmulatorProcess(hc_dir, self.gcs.url, self.pubsub.host))
        function_env = self.function_env()
        self.import_function = self._run(FunctionServer("import_dicom_object", function_env))
        self.export_function = self._run(FunctionServer("export_dicom_metadata", function_env))
        self._create_resources()
        subscriptions = f"projects/{self.names.project}/subscriptions"
        self.adapter = self._run(EventarcAdapter(self.pubsub.host, [
            f"storage:{subscriptions}/{IMPORT_SUBSCRIPTION}={self.import_function.url}/",
            f"pubsub:{subscriptions}/{EXPORT_SUBSCRIPTION}={self.export_function.url}/"]))

    def _run(self, component: ManagedServer) -> Any:
        self.components.append(component)  # before start(): a failed start is still stopped
        component.start()
        return component

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()
        self.components.clear()
        if self._tempdir is not None:
            self._tempdir.cleanup()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        return {c.name: c._process.pid for c in self.components if c._process is not None}

    # --- resources ---------------------------------------------------------------------------------------------

    def _pubsub_put(self, path: str, body: dict[str, Any]) -> None:
        url = f"http://{self.pubsub.host}/v1/projects/{self.names.project}/{path}"
        response = requests.put(url, json=body, timeout=30)
        if response.status_code not in (200, 409):
            raise RuntimeError(f"Pub/Sub emulator: PUT {path} → {response.status_code} {response.text[:300]}")

    def _create_resources(self) -> None:
        import google.cloud.storage as storage
        from google.auth.credentials import AnonymousCredentials

        from local_bigquery.warehouse import create_dataset

        project = self.names.project
        # The triggers' subscriptions, drained by the Eventarc adapter (the emulator's push is one at a time).
        for subscription, topic in ((IMPORT_SUBSCRIPTION, STORAGE_TOPIC), (EXPORT_SUBSCRIPTION, NOTIFICATION_TOPIC)):
            self._pubsub_put(f"subscriptions/{subscription}", {"topic": f"projects/{project}/topics/{topic}",
                                                               "ackDeadlineSeconds": 600})
        client = storage.Client(project=project, credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": self.gcs.url})
        for bucket in (UPLOAD_BUCKET, STAGING_BUCKET):
            client.create_bucket(bucket)
        base = f"{self.healthcare.url}/v1/projects/{project}/locations/{self.names.location}/datasets"
        for url, body in ((f"{base}?datasetId={self.names.dataset}", {}),
                          (f"{base}/{self.names.dataset}/dicomStores?dicomStoreId={self.names.store}",
                           {"notificationConfig": {"pubsubTopic": f"projects/{project}/topics/{NOTIFICATION_TOPIC}",
                                                   "sendForBulkImport": True}})):
            response = requests.post(url, json=body, timeout=30)
            if response.status_code != 200:
                raise RuntimeError(f"Healthcare emulator: POST {url} → {response.status_code} {response.text[:300]}")
        # Exports never create BigQuery datasets (as in the cloud, where Terraform does): make the table's.
        create_dataset(self.healthcare.data_dir, project, BQ_DATASET)

    # --- what happened ----------------------------------------------------------------------------------------

    def storage_client(self) -> Any:
        import google.cloud.storage as storage
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=self.names.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.gcs.url})

    def instance_count(self) -> int:
        return instance_count(self.healthcare.url, self.names)

    def row_counts(self) -> dict[str, int]:
        """SOPInstanceUID → number of metadata rows (an empty dict before the first export creates the table)."""
        return row_counts(self.healthcare.data_dir, self.names)

    def dead_letters(self, kind: str = "import") -> list[dict[str, Any]]:
        import json

        bucket = self.storage_client().bucket(STAGING_BUCKET)
        return [json.loads(blob.download_as_bytes()) for blob in bucket.list_blobs(prefix=f"dead-letter/{kind}/")]

    # --- how to reach it ---------------------------------------------------------------------------------------

    def function_env(self) -> dict[str, str]:
        """The functions' settings (README, 'Environment variables'), pointed at the emulators."""
        return {"DICOM_STORE": self.names.store_name, "STAGING_BUCKET": STAGING_BUCKET,
                "BIGQUERY_TABLE": self.names.table, "HEALTHCARE_API_ENDPOINT": self.healthcare.url,
                "LOGGING_API_ENDPOINT": self.healthcare.url,  # the emulator serves the operations' log entries
                "STORAGE_EMULATOR_HOST": self.gcs.url, "GOOGLE_CLOUD_PROJECT": self.names.project,
                "OPERATION_WAIT_SECONDS": str(self.operation_wait_seconds)}

    def endpoints(self) -> dict[str, str]:
        return {"fake-gcs-server": self.gcs.url, "pubsub-emulator": f"http://{self.pubsub.host}",
                "healthcare-emulator": self.healthcare.url, "import-function": self.import_function.url,
                "export-function": self.export_function.url, "eventarc-adapter": self.adapter.url,
                "warehouse-dir": str(self.healthcare.data_dir)}

    def env(self) -> dict[str, str]:
        """Environment for gcloud, google-cloud-storage, google-cloud-pubsub, dicomweb-client and the CLI."""
        return {**client_env(self.gcs.url, self.pubsub.host, self.healthcare.url, self.names),
                # the CLI's `query` and `filter build` read the local warehouse from here
                "HEALTHCARE_EMULATOR_DATA_DIR": str(self.healthcare.data_dir),
                # gsutil: fake-gcs-server's https port, without gcloud's own settings (see FakeGcsServer)
                "BOTO_CONFIG": str(self.boto_config), "CLOUDSDK_PASS_CREDENTIALS_TO_GSUTIL": "false"}


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def client_env(gcs_url: str, pubsub_host: str, healthcare_url: str, names: Names) -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": gcs_url, "PUBSUB_EMULATOR_HOST": pubsub_host,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{healthcare_url}/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{gcs_url}/storage/v1/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{pubsub_host}/",
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true", "CLOUDSDK_CORE_PROJECT": names.project,
            "HEALTHCARE_API_ENDPOINT": healthcare_url,
            "DICOMWEB_URL": f"{healthcare_url}/v1/{names.store_name}/dicomWeb"}



def instance_count(healthcare_url: str, names: Names) -> int:
    response = requests.get(f"{healthcare_url}/v1/{names.store_name}:getDICOMStoreMetrics", timeout=30)
    response.raise_for_status()
    return int(response.json().get("instanceCount", "0"))


def row_counts(data_dir: Path, names: Names) -> dict[str, int]:
    from local_bigquery.query import QueryError, run_query

    table = f"`{names.project}.{BQ_DATASET}.{BQ_TABLE}`"
    sql = f"SELECT SOPInstanceUID, COUNT(*) FROM {table} GROUP BY SOPInstanceUID"  # noqa: S608 - constants only
    try:
        _, rows = run_query(data_dir, sql)
    except (QueryError, OSError, RuntimeError) as exc:
        if any(word in str(exc).lower() for word in ("does not exist", "not found", "no such")):
            return {}  # no warehouse or table yet: the first export has not run
        raise
    return {str(uid): int(count) for uid, count in rows}
