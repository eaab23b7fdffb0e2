"""Where the console's data lives: the local stack (an endpoint and emulators) or Google Cloud (default credentials).

Flags win over the state file `local-stack up` writes (RUN_DIR/state.json), which wins over the environment
variables it prints, which win over the defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicom_pipeline.names import BigQueryTableUri, DicomStoreName


@dataclass(frozen=True)
class Settings:
    project: str
    location: str
    endpoint: str | None = None  # the local stack's Healthcare API; None: Google Cloud
    warehouse_dir: str | None = None  # the emulator's local warehouse; None: BigQuery
    staging_bucket: str | None = None  # dead letters live under gs://STAGING/dead-letter/
    table: str | None = None  # the pipeline's BigQuery table (bq://P.D.T), for the example queries
    store: str | None = None  # the pipeline's DICOM store, the page the console opens on
    storage_emulator_host: str | None = None  # fake-gcs-server of the local stack
    pubsub_emulator_host: str | None = None  # the local stack's Pub/Sub emulator (requeueing export dead letters)
    components: dict[str, str] = field(default_factory=dict)  # name → URL, for the Pipeline page

    @property
    def is_local(self) -> bool:
        return self.endpoint is not None

    @property
    def healthcare_base(self) -> str:
        return f"{self.endpoint.rstrip('/')}/v1" if self.endpoint else "https://healthcare.googleapis.com/v1"


def _state(run_dir: str | Path | None) -> dict[str, Any]:
    if not run_dir:
        return {}
    path = Path(run_dir) / "state.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not the local stack's state file ({exc}); run `dicom-pipeline local-stack up`"
                         ) from exc


def resolve(endpoint: str | None = None, project: str | None = None, location: str | None = None,
            warehouse_dir: str | None = None, staging_bucket: str | None = None,
            run_dir: str | Path | None = None) -> Settings:
    """Settings from flags, then the local stack's state file, then the environment. --project without
    --endpoint means Google Cloud: the local stack's state and endpoint are then ignored."""
    cloud = bool(project) and not endpoint
    state = {} if cloud else _state(run_dir)
    known = {**state.get("env", {}), **state.get("function_env", {})}

    def setting(flag: str | None, name: str) -> str | None:
        return flag or known.get(name) or os.environ.get(name) or None

    endpoint = None if cloud else setting(endpoint, "HEALTHCARE_API_ENDPOINT")
    store_text = state.get("store") or setting(None, "DICOM_STORE")
    store = DicomStoreName.from_string(store_text) if store_text else None
    project = project or (store.project if store else None) or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise ValueError("no project: pass --project (Google Cloud), or start the local stack"
                         " (`dicom-pipeline local-stack up`) and pass its --run-dir")
    table = setting(None, "BIGQUERY_TABLE")
    if table:
        BigQueryTableUri.from_string(table)
    return Settings(
        project=project, location=location or (store.location if store else None) or "us-central1",
        endpoint=endpoint.rstrip("/") if endpoint else None,
        warehouse_dir=setting(warehouse_dir, "HEALTHCARE_EMULATOR_DATA_DIR") if endpoint else warehouse_dir,
        staging_bucket=setting(staging_bucket, "STAGING_BUCKET"), table=table,
        store=str(store) if store else None,
        storage_emulator_host=None if cloud else setting(None, "STORAGE_EMULATOR_HOST"),
        pubsub_emulator_host=None if cloud else setting(None, "PUBSUB_EMULATOR_HOST"),
        components=dict(state.get("endpoints", {})))
