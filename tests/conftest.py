"""Shared fixtures: real emulators on free loopback ports, real Google clients, synthetic DICOM."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from healthcare_emulator import EmulatorServer
from local_stack.fake_gcs import FakeGcsServer
from local_stack.pubsub_emulator import PubSubEmulator, launcher_path

PROJECT, LOCATION = "test-project", "us-central1"


@pytest.fixture(autouse=True)
def isolate_environment() -> Iterator[None]:
    """Tests may set environment variables; restore them afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcsServer]:
    with FakeGcsServer() as server:
        yield server


@pytest.fixture(scope="session")
def pubsub() -> Iterator[PubSubEmulator | None]:
    """gcloud's Pub/Sub emulator, or None where it is not installed (notification tests then skip)."""
    if launcher_path() is None:
        yield None
        return
    with PubSubEmulator() as server:
        yield server


@pytest.fixture(scope="session")
def emulator(fake_gcs: FakeGcsServer, pubsub: PubSubEmulator | None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """The Healthcare emulator on a free port, reading fake-gcs-server and publishing to the Pub/Sub emulator."""
    data_dir = tmp_path_factory.mktemp("emulator-data")
    with EmulatorServer(data_dir=data_dir, storage_emulator_host=fake_gcs.url,
                        pubsub_emulator_host=pubsub.host if pubsub else None) as server:
        yield server


@pytest.fixture(scope="session")
def healthcare(emulator: EmulatorServer):
    """google-api-python-client's healthcare v1 service (static discovery), anonymous, pointed at the emulator."""
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient import discovery

    return discovery.build("healthcare", "v1", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": emulator.url}, cache_discovery=False)


@pytest.fixture(scope="session")
def gcs_client(fake_gcs: FakeGcsServer):
    import google.cloud.storage as storage
    from google.auth.credentials import AnonymousCredentials

    return storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": fake_gcs.url})


@dataclass(frozen=True)
class StoreRef:
    project: str
    location: str
    dataset: str
    store: str

    @property
    def dataset_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"

    @property
    def name(self) -> str:
        return f"{self.dataset_name}/dicomStores/{self.store}"


@pytest.fixture
def new_store(healthcare) -> Callable[..., StoreRef]:
    """Create a fresh dataset and DICOM store through the real client; returns their names."""

    def create(**store_body: object) -> StoreRef:
        ref = StoreRef(PROJECT, LOCATION, f"ds-{uuid.uuid4().hex[:10]}", f"store-{uuid.uuid4().hex[:8]}")
        datasets = healthcare.projects().locations().datasets()
        datasets.create(parent=f"projects/{PROJECT}/locations/{LOCATION}", datasetId=ref.dataset, body={}).execute()
        datasets.dicomStores().create(parent=ref.dataset_name, dicomStoreId=ref.store, body=store_body).execute()
        return ref

    return create


@pytest.fixture
def new_bucket(gcs_client) -> Callable[[], object]:
    def create():
        return gcs_client.create_bucket(f"bucket-{uuid.uuid4().hex[:12]}")

    return create


@pytest.fixture(scope="session")
def pubsub_clients(pubsub):
    """Publisher and subscriber clients on insecure channels to the Pub/Sub emulator."""
    import google.cloud.pubsub_v1 as pubsub_v1
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    if pubsub is None:
        pytest.skip("the Pub/Sub emulator is not installed")
    publisher = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(
        channel=grpc.insecure_channel(pubsub.host), credentials=AnonymousCredentials()))
    subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(
        channel=grpc.insecure_channel(pubsub.host), credentials=AnonymousCredentials()))
    return publisher, subscriber


@pytest.fixture
def topic(pubsub_clients):
    """A new Pub/Sub topic with one pull subscription; returns (topic path, pull(expected, wait) -> messages)."""
    publisher, subscriber = pubsub_clients
    suffix = uuid.uuid4().hex[:10]
    topic_path = publisher.create_topic(name=f"projects/{PROJECT}/topics/dicom-{suffix}").name
    subscription = subscriber.create_subscription(name=f"projects/{PROJECT}/subscriptions/sub-{suffix}",
                                                  topic=topic_path).name

    def pull(expected: int, wait: float = 10.0) -> list:
        import time

        received = []
        deadline = time.monotonic() + wait
        while len(received) < expected and time.monotonic() < deadline:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": 100,
                                                "return_immediately": True}, timeout=5)
            if response.received_messages:
                subscriber.acknowledge(request={"subscription": subscription,
                                                "ack_ids": [m.ack_id for m in response.received_messages]})
                received += [m.message for m in response.received_messages]
            else:
                time.sleep(0.05)
        return received

    return topic_path, pull


@pytest.fixture
def gcloud(emulator, tmp_path):
    """Run the real gcloud CLI pointed at the emulator (reference §8.3), in a throw-away config."""
    import subprocess

    env = {
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE": f"{emulator.url}/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
    }

    def run(*args: str, project: str, track: str | None = None) -> subprocess.CompletedProcess[str]:
        """`gcloud [track] healthcare ARGS --project=P` against the emulator, with no credentials."""
        command = ["gcloud", *([track] if track else []), "healthcare", *args, f"--project={project}"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    return run
