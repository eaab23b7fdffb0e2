"""Pub/Sub notifications for stored instances (reference §6), published with google-cloud-pubsub.

- `notificationConfig` (legacy): data = the instance resource name, no attributes; for imports only when
  `sendForBulkImport` is true.
- `notificationConfigs[]`: the same data plus attributes (action, lastUpdatedTime, storeName, UIDs,
  versionId, modality, storageClass, previousStorageClass on a storage-class change); sent for every
  action, imports included (the field has no sendForBulkImport switch).
A failed publish (missing topic, emulator down) is reported through `problem` and never undoes the store.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

logger = logging.getLogger(__name__)

IMPORT_ACTION = "ImportDicomData"
_PUBLISH_TIMEOUT = 30.0  # seconds to wait for the broker to acknowledge a batch
_MESSAGES_PER_REQUEST = 100  # as the batching client's default max_messages (the API allows 1,000)


@dataclass(frozen=True)
class ChangedInstance:
    """What a notification says about one instance."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    storage_class: str
    previous_storage_class: str | None = None

    def resource_name(self, store_name: str) -> str:
        return (f"{store_name}/dicomWeb/studies/{self.study_uid}/series/{self.series_uid}"
                f"/instances/{self.sop_uid}")


Problem = Callable[[str, str], None]  # (message, resource) for the operation log


class Notifier:
    """Publishes notifications; the publisher client is built on first use and shared by all threads.

    It is the generated (GAPIC) client and each call is one synchronous Publish request per topic. The
    batching PublisherClient on top of it started a commit thread per batch, and waited up to 10 ms to
    fill it, for the one message a single-object import sends: a seventh of such an import's CPU.
    """

    def __init__(self, emulator_host: str | None = None):
        # Captured once, like the Cloud Storage endpoint: the environment may change under a running server.
        self._emulator_host = emulator_host or os.environ.get("PUBSUB_EMULATOR_HOST") or None
        self._publisher: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._publisher is None:
                from google.pubsub_v1 import PublisherClient

                if self._emulator_host:
                    import grpc
                    from google.auth.credentials import AnonymousCredentials
                    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

                    channel = grpc.insecure_channel(self._emulator_host.removeprefix("http://"))
                    self._publisher = PublisherClient(
                        transport=PublisherGrpcTransport(channel=channel, credentials=AnonymousCredentials()))
                else:
                    self._publisher = PublisherClient()
            return self._publisher

    def instances_changed(self, store: dict[str, Any], instances: Iterable[ChangedInstance], action: str,
                          problem: Problem) -> None:
        """Publish one message per instance and topic configured on `store` (a DicomStore body)."""
        instances = list(instances)
        legacy = store.get("notificationConfig") or {}
        targets: list[tuple[str, bool]] = []
        if legacy.get("pubsubTopic") and (action != IMPORT_ACTION or legacy.get("sendForBulkImport")):
            targets.append((legacy["pubsubTopic"], False))
        targets += [(c["pubsubTopic"], True) for c in store.get("notificationConfigs") or [] if c.get("pubsubTopic")]
        if not instances or not targets:
            return
        now = datetime.now(UTC)
        last_updated = format_datetime(now, usegmt=True)  # RFC 1123, as the docs describe
        version = str(int(now.timestamp() * 1_000_000))
        from google.pubsub_v1.types import PubsubMessage

        client = self._client()
        for topic, with_attributes in targets:
            messages = [PubsubMessage(data=instance.resource_name(store["name"]).encode(),
                                      attributes=_attributes(store["name"], instance, action, last_updated, version)
                                      if with_attributes else {})
                        for instance in instances]
            for start in range(0, len(messages), _MESSAGES_PER_REQUEST):
                try:
                    client.publish(topic=topic, messages=messages[start:start + _MESSAGES_PER_REQUEST],
                                   retry=_retry(), timeout=_PUBLISH_TIMEOUT)
                except Exception as exc:  # NotFound for a missing topic, deadline errors, ...
                    problem(f"could not publish the notification to {topic}: {type(exc).__name__}: {exc}",
                            instances[start].resource_name(store["name"]))
                    break  # one report per topic; the rest would fail alike

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None:
                self._publisher.transport.close()
                self._publisher = None


@functools.cache
def _retry() -> Any:
    """The Publish method's own retry policy (transient codes), bounded by _PUBLISH_TIMEOUT in all."""
    from google.api_core import exceptions
    from google.api_core.retry import Retry, if_exception_type

    return Retry(predicate=if_exception_type(
        exceptions.Aborted, exceptions.Cancelled, exceptions.DeadlineExceeded, exceptions.InternalServerError,
        exceptions.ResourceExhausted, exceptions.ServiceUnavailable, exceptions.Unknown),
        initial=0.1, maximum=60.0, multiplier=4, timeout=_PUBLISH_TIMEOUT)


def _attributes(store_name: str, instance: ChangedInstance, action: str, last_updated: str,
                version: str) -> dict[str, str]:
    attributes = {
        "action": action,
        "lastUpdatedTime": last_updated,
        "storeName": store_name,
        "studyInstanceUID": instance.study_uid,
        "seriesInstanceUID": instance.series_uid,
        "sopInstanceUID": instance.sop_uid,
        "versionId": version,
        "modality": instance.modality,
        "storageClass": instance.storage_class,
    }
    if instance.previous_storage_class:
        attributes["previousStorageClass"] = instance.previous_storage_class
    return {k: v for k, v in attributes.items() if v}
