"""Cloud Storage calls through a lazily built, cached google-cloud-storage client."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from .errors import classify

DICM_OFFSET = 128


@functools.cache
def client(emulator_host: str | None, project: str | None) -> Any:
    # google-cloud-storage 3.x fetches each bucket's metadata in a background thread only to label tracing
    # spans, and after every 404 (the usual answer to an idempotency-record lookup) starts another thread
    # to check that the bucket still exists: an extra request per event, for traces we do not emit.
    os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
    from google.cloud import storage

    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        emulated = storage.Client(project=project or "local", credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": emulator_host})
        # A local emulator is never reached through a proxy: skip requests' per-call look-up of proxy and
        # netrc settings in the environment (a tenth of each call's CPU).
        emulated._http.trust_env = False
        return emulated
    return storage.Client(project=project)


def _bucket(settings: Any, bucket: str) -> Any:
    return client(settings.storage_emulator_host, settings.project).bucket(bucket)


def read_preamble_marker(settings: Any, bucket: str, name: str, generation: str | None) -> bytes | None:
    """Bytes 128–131 of the object (a ranged read; a huge object costs four bytes).

    None when the event's generation no longer exists (overwritten or deleted since): nothing to import,
    and retrying would never help; the newer generation has an event of its own.
    """
    blob = _bucket(settings, bucket).blob(name, generation=int(generation) if generation else None)
    try:
        return blob.download_as_bytes(start=DICM_OFFSET, end=DICM_OFFSET + 3, raw_download=True)
    except Exception as exc:
        if getattr(exc, "code", None) == 416:  # shorter than 129 bytes: no marker at all
            return b""
        if getattr(exc, "code", None) == 404 and generation:
            return None
        raise classify(exc, f"reading gs://{bucket}/{name}") from exc


def copy(settings: Any, bucket: str, name: str, generation: str | None, dest_bucket: str, dest_name: str) -> None:
    source = _bucket(settings, bucket)
    blob = source.blob(name)
    try:
        source.copy_blob(blob, _bucket(settings, dest_bucket), dest_name,
                         source_generation=int(generation) if generation else None)
    except Exception as exc:
        raise classify(exc, f"copying gs://{bucket}/{name} to staging") from exc


def create_if_absent(settings: Any, bucket: str, name: str, payload: dict[str, Any]) -> int | None:
    """Create the object only if it does not exist; its generation, or None if it already existed."""
    from google.api_core.exceptions import PreconditionFailed

    blob = _bucket(settings, bucket).blob(name)
    try:
        blob.upload_from_string(json.dumps(payload), content_type="application/json", if_generation_match=0)
    except PreconditionFailed:
        return None
    except Exception as exc:
        raise classify(exc, f"creating gs://{bucket}/{name}") from exc
    return int(blob.generation)


def read_json(settings: Any, bucket: str, name: str) -> tuple[dict[str, Any], int] | None:
    from google.api_core.exceptions import NotFound

    blob = _bucket(settings, bucket).blob(name)
    try:
        data = blob.download_as_bytes()
    except NotFound:
        return None
    except Exception as exc:
        raise classify(exc, f"reading gs://{bucket}/{name}") from exc
    return json.loads(data), int(blob.generation)


def replace_json(settings: Any, bucket: str, name: str, payload: dict[str, Any],
                 if_generation_match: int | None = None) -> int | None:
    """Write the object (only over that generation when given); the new generation, or None if it moved on."""
    from google.api_core.exceptions import PreconditionFailed

    blob = _bucket(settings, bucket).blob(name)
    try:
        blob.upload_from_string(json.dumps(payload), content_type="application/json",
                                if_generation_match=if_generation_match)
    except PreconditionFailed:
        return None
    except Exception as exc:
        raise classify(exc, f"writing gs://{bucket}/{name}") from exc
    return int(blob.generation)


def delete(settings: Any, bucket: str, name: str, if_generation_match: int | None = None) -> None:
    from google.api_core.exceptions import NotFound, PreconditionFailed

    try:
        _bucket(settings, bucket).blob(name).delete(if_generation_match=if_generation_match)
    except (NotFound, PreconditionFailed):
        pass
    except Exception as exc:
        raise classify(exc, f"deleting gs://{bucket}/{name}") from exc


def write_text(settings: Any, bucket: str, name: str, text: str) -> None:
    try:
        _bucket(settings, bucket).blob(name).upload_from_string(text, content_type="text/plain")
    except Exception as exc:
        raise classify(exc, f"writing gs://{bucket}/{name}") from exc
