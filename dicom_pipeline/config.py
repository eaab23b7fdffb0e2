"""Settings read from environment variables at call time into a frozen object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError
from .names import BigQueryTableUri, DicomStoreName

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
WRITE_DISPOSITIONS = ("WRITE_APPEND", "WRITE_TRUNCATE", "WRITE_EMPTY")
_LOG_VIEW = re.compile(r"projects/[^/]+/locations/[^/]+/buckets/[^/]+/views/[^/]+")


@dataclass(frozen=True)
class Settings:
    dicom_store: DicomStoreName
    staging_bucket: str
    bigquery_table: BigQueryTableUri | None = None
    import_suffixes: tuple[str, ...] = (".dcm",)
    import_storage_class: str | None = None
    operation_wait_seconds: float = 60.0
    write_disposition: str = "WRITE_APPEND"
    healthcare_api_endpoint: str | None = None
    storage_emulator_host: str | None = None
    project: str | None = None
    # Notifications served together share one export operation; a batch stays open at most this long
    # (it closes sooner once 50 ms pass with no new notification). 0 = one export per message.
    export_batch_window: float = 0.25
    export_batch_max: int = 500
    # The same for imports: objects whose events are served together share one import operation.
    import_batch_window: float = 0.25
    # Half the function's concurrency (80): a batch that takes every request in flight leaves none to collect
    # the next batch while it imports; two halves overlap (measured with bench-local: bench/README.md).
    import_batch_max: int = 40
    # Cloud Logging, where the Healthcare API writes each failed file's reason: its endpoint (None: Google
    # Cloud; the local stack's emulator serves it), the log view to read (None: the project) and how long to
    # wait for a failed operation's entries, which may arrive after the operation ends.
    logging_api_endpoint: str | None = None
    healthcare_log_view: str | None = None
    operation_log_wait_seconds: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        store = _required(env, "DICOM_STORE")
        try:
            dicom_store = DicomStoreName.from_string(store)
        except ValueError as exc:
            raise ConfigError(f"DICOM_STORE is malformed: {exc}") from None
        staging = _required(env, "STAGING_BUCKET").removeprefix("gs://").rstrip("/")
        if not staging or "/" in staging:
            raise ConfigError("STAGING_BUCKET must be a bucket name (optionally gs://NAME)")
        table = None
        if env.get("BIGQUERY_TABLE"):
            try:
                table = BigQueryTableUri.from_string(env["BIGQUERY_TABLE"])
            except ValueError as exc:
                raise ConfigError(f"BIGQUERY_TABLE is malformed: {exc}") from None
        suffixes = tuple(s.strip().lower() for s in env.get("IMPORT_SUFFIXES", ".dcm").split(",") if s.strip())
        if not suffixes:
            raise ConfigError("IMPORT_SUFFIXES must list at least one suffix, e.g. .dcm")
        storage_class = env.get("IMPORT_STORAGE_CLASS", "").strip().upper() or None
        if storage_class is not None and storage_class not in STORAGE_CLASSES:
            raise ConfigError(f"IMPORT_STORAGE_CLASS must be one of {', '.join(STORAGE_CLASSES)}")
        wait = _number(env, "OPERATION_WAIT_SECONDS", "60", 0, 3600)
        disposition = env.get("EXPORT_WRITE_DISPOSITION", "WRITE_APPEND").strip().upper()
        if disposition not in WRITE_DISPOSITIONS:
            raise ConfigError(f"EXPORT_WRITE_DISPOSITION must be one of {', '.join(WRITE_DISPOSITIONS)}")
        window = _number(env, "EXPORT_BATCH_WINDOW_SECONDS", "0.25", 0, 60)
        batch_max = int(_number(env, "EXPORT_BATCH_MAX_INSTANCES", "500", 1, 100_000))
        import_window = _number(env, "IMPORT_BATCH_WINDOW_SECONDS", "0.25", 0, 60)
        import_max = int(_number(env, "IMPORT_BATCH_MAX_OBJECTS", "40", 1, 10_000))
        endpoint = _endpoint(env, "HEALTHCARE_API_ENDPOINT")
        logging_endpoint = _endpoint(env, "LOGGING_API_ENDPOINT")
        log_view = env.get("HEALTHCARE_LOG_VIEW", "").strip() or None
        if log_view is not None and not _LOG_VIEW.fullmatch(log_view):
            raise ConfigError("HEALTHCARE_LOG_VIEW must be a log view's full name: "
                              "projects/P/locations/L/buckets/B/views/V")
        log_wait = _number(env, "OPERATION_LOG_WAIT_SECONDS", "20", 0, 600)
        return cls(
            dicom_store=dicom_store, staging_bucket=staging, bigquery_table=table, import_suffixes=suffixes,
            import_storage_class=storage_class, operation_wait_seconds=wait, write_disposition=disposition,
            healthcare_api_endpoint=endpoint, storage_emulator_host=env.get("STORAGE_EMULATOR_HOST") or None,
            project=env.get("GOOGLE_CLOUD_PROJECT") or dicom_store.project, export_batch_window=window,
            export_batch_max=batch_max, import_batch_window=import_window, import_batch_max=import_max,
            logging_api_endpoint=logging_endpoint, healthcare_log_view=log_view, operation_log_wait_seconds=log_wait,
        )


def _endpoint(env: Mapping[str, str], key: str) -> str | None:
    endpoint = env.get(key, "").strip().rstrip("/") or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"{key} must be an http:// or https:// URL")
    return endpoint


def _required(env: Mapping[str, str], key: str) -> str:
    value = env.get(key, "").strip()
    if not value:
        raise ConfigError(f"{key} is not set")
    return value


def _number(env: Mapping[str, str], key: str, default: str, low: float, high: float) -> float:
    raw = env.get(key, default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low:g} and {high:g}")
    return value
