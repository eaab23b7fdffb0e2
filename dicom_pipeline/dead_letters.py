"""Dead letters an operator acts on: list, show, requeue, purge. No CLI or HTTP here (the CLI and a console
call these functions); every problem is a DeadLetterError whose message is one line naming it.

A dead letter is `gs://STAGING_BUCKET/dead-letter/{import,export}/<key>.json`, written by the functions'
error policy (policy.py). Its id is `<kind>/<key>`.

Requeue re-drives the original event through the deployed path, so the function's own checks and
idempotency apply:

- import: the object is rewritten onto itself (same bytes, a metadata stamp), which makes a new generation
  and a genuine finalize event through whatever delivers the import trigger's events. Publishing a made-up
  storage event would need the trigger's transport (Eventarc's direct Cloud Storage source has no topic an
  operator may publish to) and would name a generation that is not the object's newest.
- export: the original message (data and attributes) is published again to the DICOM store's notification
  topic, the export trigger's topic.

The dead letter is claimed first (a conditional write marks it `requeue`), then the event is re-driven, then
the dead letter is deleted: a second requeue of the same id finds nothing, so it can add no instance and no
row. A file still broken fails in the function again and comes back as one new dead letter; nothing here
requeues by itself, so there is no loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import cloud_storage, healthcare
from .names import DicomStoreName, GcsUri, InstancePath
from .policy import now

KINDS = ("import", "export")
PREFIX = "dead-letter/"
REQUEUED_METADATA = "dicom-pipeline-requeued"  # the stamp that makes an import's rewrite a new generation
_ID = re.compile(r"(import|export)/([A-Za-z0-9_-]+)")


class DeadLetterError(Exception):
    """A dead letter that cannot be read or acted on; the message is one line naming the problem."""


@dataclass(frozen=True)
class Where:
    """Where the dead letters are and how to reach the services a requeue drives (None: Google Cloud)."""

    staging_bucket: str
    storage_emulator_host: str | None = None
    healthcare_api_endpoint: str | None = None
    pubsub_endpoint: str | None = None  # e.g. http://127.0.0.1:8085 for the Pub/Sub emulator
    project: str | None = None
    dicom_store: DicomStoreName | None = None  # for export requests that name no store
    topic: str | None = None  # projects/P/topics/T; default: the store's notification topic


@dataclass(frozen=True)
class DeadLetter:
    id: str  # <kind>/<key>
    kind: str
    time: str  # when it was dead-lettered (RFC 3339), "" if the record does not say
    reason: str
    subject: str  # the gs:// object, or the message's instance path or request
    operation: str | None
    record: dict[str, Any]  # as the function wrote it
    generation: int  # of the record's object: requeue and purge act only on what was read
    problem: str | None = None  # why the record is malformed, if it is
    requeuing_since: str | None = None  # a requeue claimed it and did not finish (crashed or still running)
    reasons: list[dict[str, Any]] = field(default_factory=list)  # each file's reason, from Cloud Logging

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "time": self.time, "reason": self.reason, "subject": self.subject,
                "operation": self.operation, "problem": self.problem, "requeuing_since": self.requeuing_since,
                "reasons": self.reasons, "record": self.record}


@dataclass(frozen=True)
class Requeued:
    id: str
    action: str  # what was re-driven, e.g. "rewrote gs://b/o as generation 7"


def _bucket(where: Where) -> Any:
    return cloud_storage.client(where.storage_emulator_host, where.project).bucket(where.staging_bucket)


def _object_name(dead_letter_id: str) -> str:
    if not _ID.fullmatch(dead_letter_id):
        raise DeadLetterError(f"{dead_letter_id!r} is not a dead-letter id (expected import/KEY or export/KEY,"
                              " as `dead-letters list` prints)")
    return f"{PREFIX}{dead_letter_id}.json"


def _parse(dead_letter_id: str, data: bytes, generation: int) -> DeadLetter:
    """A DeadLetter, with `problem` set instead of raising when the record is malformed."""
    kind = dead_letter_id.split("/", 1)[0]
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return DeadLetter(dead_letter_id, kind, "", "", "", None, {}, generation,
                          problem=f"not JSON ({type(exc).__name__})")
    if not isinstance(record, dict):
        return DeadLetter(dead_letter_id, kind, "", "", "", None, {}, generation, problem="not a JSON object")
    problem = None
    if kind == "import":
        subject = record.get("object")
        if not isinstance(subject, str) or not subject.startswith("gs://"):
            problem, subject = "it names no gs:// object", ""
    else:
        subject, problem = _message_subject(record.get("message"))
    requeue = record.get("requeue")
    reasons = record.get("reasons")
    return DeadLetter(dead_letter_id, kind, str(record.get("time") or ""), str(record.get("reason") or ""),
                      str(subject), record.get("operation") if isinstance(record.get("operation"), str) else None,
                      record, generation, problem,
                      str(requeue.get("time")) if isinstance(requeue, dict) else None,
                      [r for r in reasons if isinstance(r, dict)] if isinstance(reasons, list) else [])


def _message_subject(message: Any) -> tuple[str, str | None]:
    try:
        data = _message_data(message)
    except DeadLetterError as exc:
        return "", str(exc)
    text = data.decode("utf-8", "replace").strip()
    return (text if len(text) <= 200 else text[:200] + "…"), None


def _message_data(message: Any) -> bytes:
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise DeadLetterError("it holds no Pub/Sub message with base64 data")
    try:
        return base64.b64decode(message["data"], validate=True)
    except (binascii.Error, ValueError):
        raise DeadLetterError("its message data is not valid base64") from None


def iter_dead_letters(where: Where, kind: str | None = None) -> Iterator[DeadLetter]:
    """Every dead letter of that kind (both kinds when None), malformed ones with `problem` set."""
    bucket = _bucket(where)
    for each in (kind,) if kind else KINDS:
        if each not in KINDS:
            raise DeadLetterError(f"kind must be one of {', '.join(KINDS)}")
        for blob in bucket.client.list_blobs(bucket, prefix=f"{PREFIX}{each}/"):
            key = blob.name[len(f"{PREFIX}{each}/"):].removesuffix(".json")
            if not blob.name.endswith(".json") or not _ID.fullmatch(f"{each}/{key}"):
                continue  # not a record the functions write
            try:
                data = blob.download_as_bytes(if_generation_match=blob.generation)
            except Exception as exc:
                if _status(exc) in (404, 412):  # purged or requeued while listing
                    continue
                raise
            yield _parse(f"{each}/{key}", data, int(blob.generation))


def list_dead_letters(where: Where, kind: str | None = None, since: datetime | None = None,
                      reason_contains: str | None = None) -> list[DeadLetter]:
    """Dead letters, oldest first, filtered by kind, time (dead-lettered at or after `since`) and reason text."""
    found = []
    for letter in iter_dead_letters(where, kind):
        if since is not None and (_time(letter) or datetime.min.replace(tzinfo=UTC)) < since:
            continue
        if reason_contains and reason_contains.lower() not in letter.reason.lower():
            continue
        found.append(letter)
    return sorted(found, key=lambda letter: (letter.time, letter.id))


def get(where: Where, dead_letter_id: str) -> DeadLetter:
    blob = _bucket(where).get_blob(_object_name(dead_letter_id))
    if blob is None:
        raise DeadLetterError(f"no dead letter {dead_letter_id} in gs://{where.staging_bucket}/{PREFIX}"
                              " (requeued or purged already?)")
    return _parse(dead_letter_id, blob.download_as_bytes(), int(blob.generation))


def requeue(where: Where, dead_letter_id: str) -> Requeued:
    """Re-drive the dead letter's event through the deployed function, then delete the dead letter."""
    letter = get(where, dead_letter_id)
    if letter.problem:
        raise DeadLetterError(f"dead letter {letter.id} cannot be requeued: {letter.problem}")
    # Check what the re-drive needs before claiming, so a refusal leaves the dead letter as it was.
    target = _import_target(where, letter) if letter.kind == "import" else _export_target(where, letter)
    claimed = cloud_storage.replace_json(where, where.staging_bucket, _object_name(letter.id),
                                         {**letter.record, "requeue": {"time": now()}}, letter.generation)
    if claimed is None:
        raise DeadLetterError(f"dead letter {letter.id} changed while being requeued (another requeue or purge?);"
                              " list again")
    try:
        action = _rewrite(where, target) if letter.kind == "import" else _publish(where, letter, target)
    except Exception:
        cloud_storage.replace_json(where, where.staging_bucket, _object_name(letter.id), letter.record, claimed)
        raise
    cloud_storage.delete(where, where.staging_bucket, _object_name(letter.id), if_generation_match=claimed)
    return Requeued(letter.id, action)


def _import_target(where: Where, letter: DeadLetter) -> Any:
    try:
        uri = GcsUri.from_string(letter.subject)
    except ValueError:
        raise DeadLetterError(f"dead letter {letter.id} names no gs://BUCKET/OBJECT: {letter.subject!r}") from None
    blob = cloud_storage.client(where.storage_emulator_host, where.project).bucket(uri.bucket).get_blob(uri.name)
    if blob is None:
        raise DeadLetterError(f"{uri} no longer exists: nothing to requeue (upload it again, or purge {letter.id})")
    return blob


def _rewrite(where: Where, source: Any) -> str:
    """The object onto itself: a new generation and a finalize event; only over the generation just read."""
    target = source.bucket.blob(source.name)
    target.content_type = source.content_type
    target.metadata = {**(source.metadata or {}), REQUEUED_METADATA: now()}
    try:
        token, _, _ = target.rewrite(source, if_generation_match=source.generation)
        while token is not None:
            token, _, _ = target.rewrite(source, token=token, if_generation_match=source.generation)
    except Exception as exc:
        if _status(exc) == 412:
            raise DeadLetterError(f"gs://{source.bucket.name}/{source.name} changed while being requeued; its new"
                                  " generation has an event of its own") from None
        raise
    return f"rewrote gs://{source.bucket.name}/{source.name} as generation {target.generation}"


def _export_target(where: Where, letter: DeadLetter) -> str:
    """The topic to publish to: given, or the DICOM store's notification topic (the export trigger's)."""
    if where.topic:
        return where.topic
    data = _message_data(letter.record.get("message")).strip()
    store = where.dicom_store
    try:
        store = InstancePath.from_string(data.decode("ascii")).store
    except (UnicodeDecodeError, ValueError):
        try:
            named = json.loads(data).get("store") if data.startswith(b"{") else None
            store = DicomStoreName.from_string(named) if isinstance(named, str) else store
        except (ValueError, AttributeError):
            pass  # the function refused this request; the configured store's topic is where it came from
    if store is None:
        raise DeadLetterError(f"dead letter {letter.id}: its message names no DICOM store; give the store"
                              " (DICOM_STORE) or the export trigger's topic")
    body = healthcare.dicom_stores(where.healthcare_api_endpoint).get(name=str(store)).execute(num_retries=0)
    configs = [body.get("notificationConfig") or {}, *(body.get("notificationConfigs") or [])]
    topics = sorted({c["pubsubTopic"] for c in configs if isinstance(c, dict) and c.get("pubsubTopic")})
    if len(topics) != 1:
        raise DeadLetterError(f"{store} has {len(topics)} notification topics ({', '.join(topics) or 'none'}):"
                              " give the export trigger's topic")
    return str(topics[0])


def _publish(where: Where, letter: DeadLetter, topic: str) -> str:
    message = letter.record["message"]
    attributes = message.get("attributes") if isinstance(message.get("attributes"), dict) else {}
    body = {"messages": [{"data": message["data"], "attributes": {str(k): str(v) for k, v in attributes.items()}}]}
    publisher = healthcare.build(where.pubsub_endpoint, "pubsub", "v1").projects().topics()
    answer = publisher.publish(topic=topic, body=body).execute(num_retries=0)
    return f"published to {topic} as message {answer.get('messageIds', ['?'])[0]}"


def purge(where: Where, dead_letter_id: str) -> None:
    get(where, dead_letter_id)  # says which id does not exist
    cloud_storage.delete(where, where.staging_bucket, _object_name(dead_letter_id))


def purge_older_than(where: Where, age: timedelta, kind: str | None = None) -> list[str]:
    """Delete the dead letters written more than `age` ago; their ids."""
    cutoff = datetime.now(UTC) - age
    purged = []
    for letter in iter_dead_letters(where, kind):
        written = _time(letter)
        if written is not None and written < cutoff:
            cloud_storage.delete(where, where.staging_bucket, _object_name(letter.id),
                                 if_generation_match=letter.generation)
            purged.append(letter.id)
    return purged


def _time(letter: DeadLetter) -> datetime | None:
    try:
        return datetime.fromisoformat(letter.time.replace("Z", "+00:00"))
    except ValueError:
        return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """30m, 12h, 7d, 2w → a timedelta; ValueError with a one-line message otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and s, m, h, d or w (e.g. 12h, 7d)")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def parse_since(text: str) -> datetime:
    """A duration back from now (12h) or an RFC 3339 / ISO time (2026-01-02T03:04:05Z)."""
    try:
        return datetime.now(UTC) - parse_age(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (12h, 7d) nor a time (2026-01-02T03:04:05Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None
