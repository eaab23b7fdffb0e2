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
from dataclasses import dataclass, field
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
    """Publishes notifications over a gRPC channel built on first use and shared by all threads.

    Publish requests are synchronous, with the Publish method's own retry policy. The batching
    PublisherClient started a commit thread per batch and waited up to 10 ms to fill it, and the generated
    client's per-call layers (retry and timeout wrappers, logging interceptor) cost as much again, for the one
    message a single-object import sends: together a fifth of such an import's CPU.

    Group publishing: a gRPC call costs ~0.4 ms CPU whatever it carries, and in a burst several operations
    publish at once. The first caller leads: it sends what every caller queued meanwhile, one request per
    topic (up to _MESSAGES_PER_REQUEST), then hands the lead to the next waiting caller. Nobody waits for a
    timer; each caller gets the outcome of the request that carried its messages.
    """

    def __init__(self, emulator_host: str | None = None):
        # Captured once, like the Cloud Storage endpoint: the environment may change under a running server.
        self._emulator_host = emulator_host or os.environ.get("PUBSUB_EMULATOR_HOST") or None
        self._channel: Any = None
        self._publish: Any = None  # the Publish method on the channel
        self._lock = threading.Lock()
        self._types: Any = None  # what each publish needs from grpc and the Pub/Sub types, imported once
        self._queue: list[_Pending] = []  # group publishing (class docstring), under _queue_lock
        self._leading = False
        self._queue_lock = threading.Lock()

    def _publisher(self) -> Any:
        with self._lock:
            if self._publish is None:
                import grpc
                from google.api_core import exceptions
                from google.pubsub_v1.types import PublishRequest, PublishResponse, PubsubMessage

                # Imported here, not per call: a function-level import costs a lookup each time.
                self._types = _Types(grpc.RpcError, exceptions.from_grpc_error, PublishRequest.pb(),
                                     PubsubMessage.pb())

                if self._emulator_host:
                    self._channel = grpc.insecure_channel(self._emulator_host.removeprefix("http://"))
                else:  # the generated transport's channel: default credentials, Pub/Sub's endpoint and options
                    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

                    self._channel = PublisherGrpcTransport().grpc_channel
                self._publish = self._channel.unary_unary(
                    "/google.pubsub.v1.Publisher/Publish", request_serializer=_serialize,
                    response_deserializer=PublishResponse.pb().FromString)
            return self._publish

    def _send(self, topic: str, messages: list[Any]) -> None:
        """Publish `messages` (at most _MESSAGES_PER_REQUEST) to `topic`, grouped with other callers' messages;
        raises the google.api_core exception of the request that carried them."""
        pending = _Pending(topic, messages)
        with self._queue_lock:
            self._queue.append(pending)
            if not self._leading:
                self._leading = True
                pending.wake.set()  # lead now
        pending.wake.wait()
        if not pending.finished:  # woken to lead: this caller's messages are still queued
            self._lead()
        if pending.error is not None:
            raise pending.error

    def _lead(self) -> None:
        """Send everything queued, then pass the lead to the next caller that queued meanwhile (if any)."""
        with self._queue_lock:
            taken, self._queue = self._queue, []
        try:
            for topic in dict.fromkeys(p.topic for p in taken):
                group: list[_Pending] = []
                for pending in (p for p in taken if p.topic == topic):
                    if group and sum(len(p.messages) for p in group) + len(pending.messages) > _MESSAGES_PER_REQUEST:
                        self._send_group(topic, group)
                        group = []
                    group.append(pending)
                self._send_group(topic, group)
        finally:
            for pending in taken:
                if not pending.finished:  # only after an unexpected error; report it rather than hang
                    pending.error = pending.error or RuntimeError("notification publishing failed")
                    pending.finished = True
                    pending.wake.set()
            with self._queue_lock:
                if self._queue:
                    self._queue[0].wake.set()
                else:
                    self._leading = False

    def _send_group(self, topic: str, group: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._request(topic, [m for p in group for m in p.messages])
        except Exception as exc:  # NotFound for a missing topic, deadline errors, ...
            error = exc
        for pending in group:
            pending.error, pending.finished = error, True
            pending.wake.set()

    def _request(self, topic: str, messages: list[Any]) -> None:
        """One Publish request; errors are google.api_core exceptions, as the generated client raises."""
        publish = self._publisher()
        types = self._types
        request = types.request(topic=topic, messages=messages)

        def attempt() -> None:
            try:
                publish(request, timeout=_PUBLISH_TIMEOUT)
            except types.rpc_error as exc:
                raise types.from_grpc_error(exc) from exc

        _retry()(attempt)()

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
        self._publisher()
        message_type = self._types.message
        for topic, with_attributes in targets:
            messages = [message_type(data=instance.resource_name(store["name"]).encode(),
                                     attributes=_attributes(store["name"], instance, action, last_updated, version)
                                     if with_attributes else {})
                        for instance in instances]
            for start in range(0, len(messages), _MESSAGES_PER_REQUEST):
                try:
                    self._send(topic, messages[start:start + _MESSAGES_PER_REQUEST])
                except Exception as exc:  # NotFound for a missing topic, deadline errors, ...
                    problem(f"could not publish the notification to {topic}: {type(exc).__name__}: {exc}",
                            instances[start].resource_name(store["name"]))
                    break  # one report per topic; the rest would fail alike

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = self._publish = None


@dataclass(eq=False)
class _Pending:
    """One caller's messages for one topic, waiting to be sent."""

    topic: str
    messages: list[Any]
    wake: threading.Event = field(default_factory=threading.Event)  # set: finished, or this caller leads
    finished: bool = False
    error: BaseException | None = None


@dataclass(frozen=True)
class _Types:
    rpc_error: type[Exception]
    from_grpc_error: Callable[[Exception], Exception]
    request: Any  # PublishRequest's protobuf class
    message: Any  # PubsubMessage's protobuf class


def _serialize(request: Any) -> bytes:
    return bytes(request.SerializeToString())


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
