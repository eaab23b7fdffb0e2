"""What the console shows and does, through the public APIs only: Healthcare REST and DICOMweb, Cloud Storage,
BigQuery or the local warehouse. Knows no web framework; every failure is a ConsoleError with one readable line.

The same code runs against Google Cloud (default credentials) and the local stack (an endpoint, anonymous).
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import requests

from dicom_pipeline import dead_letters, healthcare
from dicom_pipeline.errors import PipelineError, http_status
from dicom_pipeline.names import BigQueryTableUri, DicomStoreName, GcsUri

from . import dicom_json
from .settings import Settings

_TIMEOUT = 30
STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
WRITE_DISPOSITIONS = ("WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND")
# dicomStores.export to Cloud Storage: the transfer syntaxes the API accepts for application/dicom (reference:
# GcsDestination.mimeType), "*" for as stored. Named by pydicom's UID dictionary, but for the four it lacks.
_EXPORT_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50",
                    "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
                    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90",
                    "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111",
                    "1.2.840.10008.1.2.4.112", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                    "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.8.1")
_NAMES_PYDICOM_LACKS = {"1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
                        "1.2.840.10008.1.2.4.111": "JPEG XL Recompression", "1.2.840.10008.1.2.4.112": "JPEG XL",
                        "1.2.840.10008.1.2.8.1": "Deflated Image Frame"}


def _syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    name = str(UID(uid).name)
    return _NAMES_PYDICOM_LACKS.get(uid, name)


TRANSFER_SYNTAXES = {"*": "as stored (no transcoding)", **{uid: _syntax_name(uid) for uid in _EXPORT_SYNTAXES}}
# The seed's two BigQuery examples, with TABLE for the pipeline's table (a PatientID of this store's data).
EXAMPLE_QUERIES = {
    "DICOMweb paths of a patient's instances":
        "SELECT CONCAT('/dicomWeb/studies/', StudyInstanceUID, '/series/', SeriesInstanceUID, '/instances/',"
        " SOPInstanceUID) AS DICOMwebPath\nFROM TABLE\nWHERE PatientID = (SELECT MIN(PatientID) FROM TABLE)",
    "The latest studies":
        "SELECT MIN(CONCAT(StudyDate, ' ', StudyTime)) AS StudyDateTime, MIN(PatientID) AS PatientID,\n"
        "  StudyInstanceUID, COUNT(*) AS InstanceCount\nFROM TABLE AS dicom\nGROUP BY StudyInstanceUID\n"
        "ORDER BY StudyDateTime DESC\nLIMIT 10",
}
EXPORT_FILE_TYPES = {
    "dcm": "DICOM (.dcm)",
    "octet": "Raw pixel data (application/octet-stream)",
    "jpg": "JPEG image (.jpg)",
    "png": "PNG image (.png)",
}


class ConsoleError(Exception):
    """A failure the console shows as one line: what was asked, what answered, and the fix where known."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    offset: int
    limit: int
    has_more: bool


@dataclass(frozen=True)
class Rendered:
    """A rendered image from the store, or why the store would not render it (`refused`, with its status)."""

    content: bytes = b""
    content_type: str = ""
    refused: str = ""


def export_mime_type(file_type: str, transfer_syntax: str) -> str:
    """The GcsDestination.mimeType for a file type and transfer syntax chosen in the Export form."""
    if file_type == "png":
        return "image/png"
    if file_type == "jpg":
        return "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    if file_type == "octet":
        if transfer_syntax not in ("*", "1.2.840.10008.1.2.1"):
            raise ConsoleError("raw pixel data is exported as stored (*) or uncompressed (1.2.840.10008.1.2.1)")
        return f"application/octet-stream; transfer-syntax={transfer_syntax}"
    if file_type == "dcm":
        if transfer_syntax not in TRANSFER_SYNTAXES:
            raise ConsoleError(f"transfer syntax {transfer_syntax!r} is not one the API exports; pick one of the list")
        return f"application/dicom; transfer-syntax={transfer_syntax}"
    raise ConsoleError(f"file type {file_type!r} is not one of {', '.join(EXPORT_FILE_TYPES)}")


def _api_message(response: requests.Response) -> str:
    """The first line of a Google JSON error's message, else of the body (never a whole HTML page)."""
    message = ""
    try:
        error = response.json().get("error", {})
        if isinstance(error, dict):
            message = str(error.get("message") or "")
    except (ValueError, AttributeError):
        pass
    text = message or response.text or response.reason or ""
    return (text.strip().splitlines() or [""])[0][:300]


class Console:
    """One per console server. Thread-safe: each thread has its own HTTP session (uvicorn's thread pool)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._local = threading.local()
        self._storage: Any = None
        self._storage_guard = threading.Lock()
        self._samples: dict[str, deque[tuple[float, int]]] = {}  # store → (time, instanceCount), for the chart

    # --- transport ---------------------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            if self.settings.is_local:
                session = requests.Session()
            else:
                import google.auth
                from google.auth.exceptions import DefaultCredentialsError
                from google.auth.transport.requests import AuthorizedSession

                try:
                    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
                except DefaultCredentialsError as exc:
                    raise ConsoleError(f"no Google Cloud credentials ({str(exc)[:200]}); run `gcloud auth"
                                       " application-default login`, or start the console for the local stack") from exc
                session = AuthorizedSession(credentials)
            self._local.session = session
        return session

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        url = f"{self.settings.healthcare_base}/{path.lstrip('/')}"
        try:
            response = self._session().request(method, url, timeout=_TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            where = self.settings.endpoint or "the Cloud Healthcare API"
            raise ConsoleError(f"{what}: cannot reach {where} ({type(exc).__name__}); is it running?") from exc
        return response

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, what, **kwargs)
        if response.status_code >= 400:
            raise ConsoleError(f"{what}: HTTP {response.status_code}: {_api_message(response)}")
        return dict(response.json()) if response.content else {}

    def _list(self, path: str, key: str, what: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = None
        while True:
            page = self._json("GET", path, what, params={"pageToken": token} if token else None)
            found.extend(page.get(key, []))
            token = page.get("nextPageToken")
            if not token:
                return found

    # --- datasets and stores -----------------------------------------------------------------------------------

    @property
    def location_name(self) -> str:
        return f"projects/{self.settings.project}/locations/{self.settings.location}"

    def datasets(self) -> list[dict[str, Any]]:
        return self._list(f"{self.location_name}/datasets", "datasets", "datasets.list")

    def create_dataset(self, dataset_id: str) -> None:
        _check_id(dataset_id, "dataset ID")
        self._json("POST", f"{self.location_name}/datasets", "datasets.create", params={"datasetId": dataset_id},
                   json={})

    def stores(self, dataset: str) -> list[dict[str, Any]]:
        return self._list(f"{dataset}/dicomStores", "dicomStores", "dicomStores.list")

    def create_store(self, dataset: str, store_id: str) -> None:
        _check_id(store_id, "DICOM store ID")
        self._json("POST", f"{dataset}/dicomStores", "dicomStores.create", params={"dicomStoreId": store_id},
                   json={})

    def store_metrics(self, store: str) -> dict[str, Any]:
        return self._json("GET", f"{store}:getDICOMStoreMetrics", "dicomStores.getDICOMStoreMetrics")

    # --- DICOMweb ----------------------------------------------------------------------------------------------

    def _qido(self, store: str, path: str, params: dict[str, str], offset: int, limit: int) -> Page:
        # One more than the page asks for: tells whether a next page exists without counting the whole store.
        query = {**params, "offset": str(offset), "limit": str(limit + 1)}
        response = self._request("GET", f"{store}/dicomWeb/{path}", f"search {path}", params=query,
                                 headers={"Accept": "application/dicom+json"})
        if response.status_code == 204:
            return Page([], offset, limit, False)
        if response.status_code >= 400:
            raise ConsoleError(f"search {path}: HTTP {response.status_code}: {_api_message(response)}")
        items = response.json() if response.content else []
        return Page(items[:limit], offset, limit, len(items) > limit)

    def studies(self, store: str, patient_id: str = "", modality: str = "", date_from: str = "", date_to: str = "",
                offset: int = 0, limit: int = 25) -> Page:
        params = {"includefield": "StudyDescription,NumberOfStudyRelatedInstances,ModalitiesInStudy"}
        if patient_id.strip():
            params["PatientID"] = patient_id.strip()
        if modality.strip():
            params["ModalitiesInStudy"] = modality.strip().upper()
        if date_from or date_to:
            params["StudyDate"] = f"{_dicom_date(date_from)}-{_dicom_date(date_to)}"
        return self._qido(store, "studies", params, offset, limit)

    def series(self, store: str, study: str, offset: int = 0, limit: int = 25) -> Page:
        params = {"includefield": "SeriesDescription,NumberOfSeriesRelatedInstances"}
        return self._qido(store, f"studies/{study}/series", params, offset, limit)

    def instances(self, store: str, study: str, series: str, offset: int = 0, limit: int = 25) -> Page:
        params = {"includefield": "NumberOfFrames,Rows,Columns"}
        return self._qido(store, f"studies/{study}/series/{series}/instances", params, offset, limit)

    def first_instance(self, store: str, study: str, series: str | None = None) -> tuple[str, str] | None:
        """(series, instance) of a study's or series' first instance, by two one-result searches at most."""
        if series is None:
            found = self.series(store, study, limit=1).items
            if not found:
                return None
            series = dicom_json.value(found[0], "SeriesInstanceUID")
        instances = self.instances(store, study, series, limit=1).items
        return (series, dicom_json.value(instances[0], "SOPInstanceUID")) if instances else None

    def instance_metadata(self, store: str, study: str, series: str, instance: str) -> dict[str, Any]:
        path = f"{store}/dicomWeb/studies/{study}/series/{series}/instances/{instance}/metadata"
        response = self._request("GET", path, "retrieve metadata", headers={"Accept": "application/dicom+json"})
        if response.status_code >= 400:
            raise ConsoleError(f"retrieve metadata: HTTP {response.status_code}: {_api_message(response)}")
        body = response.json()
        if not body:
            raise ConsoleError("retrieve metadata: the store returned no instance")
        return dict(body[0])

    def rendered(self, store: str, study: str, series: str, instance: str, frame: int | None = None,
                 viewport: str | None = None) -> Rendered:
        """An instance (first frame) or one frame as JPEG/PNG from the store's rendered endpoint (DICOMweb)."""
        path = f"{store}/dicomWeb/studies/{study}/series/{series}/instances/{instance}"
        path += f"/frames/{frame}/rendered" if frame else "/rendered"
        params = {"viewport": viewport} if viewport else None
        response = self._request("GET", path, "retrieve rendered", params=params,
                                 headers={"Accept": "image/jpeg"})
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if response.status_code == 200 and content_type in ("image/jpeg", "image/png"):
            return Rendered(response.content, content_type)
        return Rendered(refused=f"HTTP {response.status_code}: {_api_message(response)}"[:200])

    # --- long-running operations -------------------------------------------------------------------------------

    def start_import(self, store: str, uri: str, storage_class: str = "") -> dict[str, Any]:
        store_name = _store_name(store)
        try:
            source = GcsUri.from_string(uri.strip())
        except ValueError as exc:
            raise ConsoleError(f"source {uri.strip()!r}: {exc} (wildcards *, ** and ? allowed after the bucket)") \
                from exc
        if storage_class and storage_class not in STORAGE_CLASSES:
            raise ConsoleError(f"storage class {storage_class!r} is not one of {', '.join(STORAGE_CLASSES)}")
        return self._core("dicomStores.import", healthcare.import_dicom, self.settings.endpoint, store_name, source,
                          storage_class or None)

    def start_export_bigquery(self, store: str, table: str, write_disposition: str = "", overwrite: bool = False,
                              filter_uri: str = "") -> dict[str, Any]:
        try:
            destination: dict[str, Any] = {"tableUri": str(BigQueryTableUri.from_string(table))}
        except ValueError as exc:
            raise ConsoleError(f"table {table!r}: {exc}") from exc
        if write_disposition and write_disposition not in WRITE_DISPOSITIONS:
            raise ConsoleError(f"write disposition {write_disposition!r} is not one of {', '.join(WRITE_DISPOSITIONS)}")
        if write_disposition and overwrite:
            raise ConsoleError("overwrite table is the legacy form of WRITE_TRUNCATE: choose one of the two")
        if write_disposition:
            destination["writeDisposition"] = write_disposition
        elif overwrite:
            destination["force"] = True
        return self._export(store, {"bigqueryDestination": destination, **_filter_config(filter_uri)})

    def start_export_gcs(self, store: str, prefix: str, mime_type: str = "", filter_uri: str = "") -> dict[str, Any]:
        prefix = prefix.strip()
        try:
            GcsUri.from_string(prefix.rstrip("/") + "/x")  # validates the bucket part of gs://BUCKET[/PREFIX]
        except ValueError as exc:
            raise ConsoleError(f"destination {prefix!r}: expected gs://BUCKET/PREFIX") from exc
        destination = {"uriPrefix": prefix, **({"mimeType": mime_type} if mime_type else {})}
        return self._export(store, {"gcsDestination": destination, **_filter_config(filter_uri)})

    def _export(self, store: str, body: dict[str, Any]) -> dict[str, Any]:
        stores = healthcare.dicom_stores(self.settings.endpoint)
        return self._core("dicomStores.export",
                          lambda: stores.export(name=str(_store_name(store)), body=body).execute(num_retries=0))

    def _core(self, what: str, call: Any, *args: Any) -> dict[str, Any]:
        """A call through dicom_pipeline (google-api-python-client), its failure as one line."""
        try:
            return dict(call(*args))
        except PipelineError as exc:
            raise ConsoleError(str(exc)) from exc
        except Exception as exc:
            status = http_status(exc)
            detail = getattr(exc, "reason", None) or str(exc)
            raise ConsoleError(f"{what}: {'HTTP ' + str(status) + ': ' if status else ''}{detail}"[:400]) from exc

    def operations(self, dataset: str, limit: int = 50) -> list[dict[str, Any]]:
        found = self._list(f"{dataset}/operations", "operations", "operations.list")
        found.sort(key=lambda op: op.get("metadata", {}).get("createTime", ""), reverse=True)
        return found[:limit]

    def operation(self, name: str) -> dict[str, Any]:
        if "/operations/" not in name:
            raise ConsoleError(f"{name!r} is not an operation name (projects/P/locations/L/datasets/D/operations/ID)")
        return self._json("GET", name, "operations.get")

    def operation_log(self, operation: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-file reasons: the entries at metadata.logsUrl where it answers JSON (the local stack's emulator).

        Google Cloud's logsUrl is a link into the Cloud Logging console, shown as a link instead.
        """
        url = str(operation.get("metadata", {}).get("logsUrl", ""))
        if not url.startswith(("http://127.0.0.1", "http://localhost")) and not (
                self.settings.endpoint and url.startswith(self.settings.endpoint)):
            return []
        try:
            body = requests.get(url, timeout=10).json()
        except (requests.RequestException, ValueError):
            return []
        entries = body.get("entries") if isinstance(body, dict) else None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    # --- Cloud Storage -----------------------------------------------------------------------------------------

    def _storage_client(self) -> Any:
        with self._storage_guard:
            if self._storage is None:
                from google.cloud import storage

                if self.settings.storage_emulator_host:
                    from google.auth.credentials import AnonymousCredentials

                    self._storage = storage.Client(project=self.settings.project, credentials=AnonymousCredentials(),
                                                   client_options={"api_endpoint":
                                                                   self.settings.storage_emulator_host})
                else:
                    self._storage = storage.Client(project=self.settings.project)
            return self._storage

    def objects(self, prefix_uri: str, limit: int = 200) -> list[dict[str, Any]]:
        """Objects under gs://BUCKET/PREFIX (the result of an export to Cloud Storage), name order."""
        if not prefix_uri.startswith("gs://") or not prefix_uri[5:].split("/", 1)[0]:
            raise ConsoleError(f"{prefix_uri!r}: expected gs://BUCKET/PREFIX")
        bucket, _, prefix = prefix_uri[5:].partition("/")
        try:
            blobs = self._storage_client().list_blobs(bucket, prefix=prefix, max_results=limit)
            return [{"name": b.name, "size": b.size, "content_type": b.content_type, "updated": b.updated}
                    for b in blobs]
        except Exception as exc:
            raise ConsoleError(f"list gs://{bucket}/{prefix}: {_storage_message(exc)}") from exc

    def image_object(self, uri: str, max_bytes: int = 20 * 2**20) -> Rendered:
        """An exported PNG or JPEG object's bytes (the store's rendering, kept in Cloud Storage), else why not."""
        if not uri.startswith("gs://") or "/" not in uri[5:]:
            raise ConsoleError(f"{uri!r}: expected gs://BUCKET/OBJECT")
        bucket, name = uri[5:].split("/", 1)
        try:
            blob = self._storage_client().bucket(bucket).get_blob(name)
        except Exception as exc:
            raise ConsoleError(f"get {uri}: {_storage_message(exc)}") from exc
        if blob is None:
            return Rendered(refused="no such object")
        if blob.content_type not in ("image/png", "image/jpeg") or (blob.size or 0) > max_bytes:
            return Rendered(refused=f"not a PNG or JPEG image under {max_bytes} bytes")
        return Rendered(blob.download_as_bytes(), blob.content_type)

    def _dead_letter_place(self) -> dead_letters.Where:
        if not self.settings.staging_bucket:
            raise ConsoleError("no staging bucket: pass --staging-bucket (the functions' STAGING_BUCKET)")
        pubsub = self.settings.pubsub_emulator_host
        return dead_letters.Where(
            staging_bucket=self.settings.staging_bucket, storage_emulator_host=self.settings.storage_emulator_host,
            healthcare_api_endpoint=self.settings.endpoint, project=self.settings.project,
            pubsub_endpoint=f"http://{pubsub}" if pubsub and "://" not in pubsub else pubsub,
            dicom_store=DicomStoreName.from_string(self.settings.store) if self.settings.store else None)

    def dead_letters(self, limit: int = 200) -> list[dead_letters.DeadLetter]:
        """The records the functions left under gs://STAGING/dead-letter/ (dicom_pipeline.dead_letters), newest
        first."""
        where = self._dead_letter_place()
        try:
            return list(reversed(dead_letters.list_dead_letters(where)))[:limit]
        except dead_letters.DeadLetterError as exc:
            raise ConsoleError(str(exc)) from exc
        except Exception as exc:
            raise ConsoleError(f"list gs://{where.staging_bucket}/dead-letter/: {_storage_message(exc)}") from exc

    def requeue(self, dead_letter_id: str) -> str:
        """Re-drive a dead letter's event through the deployed function (the core's requeue); what it did."""
        try:
            return dead_letters.requeue(self._dead_letter_place(), dead_letter_id).action
        except dead_letters.DeadLetterError as exc:
            raise ConsoleError(str(exc)) from exc
        except Exception as exc:
            raise ConsoleError(f"requeue {dead_letter_id}: {_storage_message(exc)}") from exc

    # --- Query -------------------------------------------------------------------------------------------------

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """BigQuery SQL against the local warehouse (local stack) or BigQuery, chosen as `dicom-pipeline query`."""
        from cli.common import UsageError
        from cli.query import run_sql

        if not sql.strip():
            raise ConsoleError("the query is empty: write one BigQuery SQL statement or pick an example")
        args = argparse.Namespace(data_dir=self.settings.warehouse_dir, project=self.settings.project,
                                  endpoint=self.settings.endpoint)
        try:
            return run_sql(args, sql)
        except UsageError as exc:
            raise ConsoleError(str(exc)) from exc
        except Exception as exc:
            raise ConsoleError(f"the query failed: {type(exc).__name__}: {str(exc)[:300]}") from exc

    def example_queries(self) -> dict[str, str]:
        """The seed's two queries (search by PatientID with DICOMweb paths; the latest studies) on this table."""
        table = BigQueryTableUri.from_string(self.settings.table) if self.settings.table else None
        name = f"`{table.project}.{table.dataset}.{table.table}`" if table else "`PROJECT.DATASET.TABLE`"
        return {title: sql.replace("TABLE", name) for title, sql in EXAMPLE_QUERIES.items()}

    # --- Pipeline ----------------------------------------------------------------------------------------------

    def components(self) -> list[dict[str, Any]]:
        """Which parts of the pipeline answer: the local stack's processes, or the Google Cloud APIs."""
        checks: list[dict[str, Any]] = []
        if self.settings.components:
            for name, url in self.settings.components.items():
                if not url.startswith("http"):
                    continue
                checks.append({"name": name, "url": url, "answers": _answers(url)})
        else:
            checks.append({"name": "Cloud Healthcare API", "url": self.settings.healthcare_base,
                           "answers": self._healthcare_answers()})
        return checks

    def _healthcare_answers(self) -> bool:
        try:
            self.datasets()
            return True
        except ConsoleError:
            return False

    def sample_rate(self, store: str) -> list[tuple[float, float]]:
        """Record the store's instance count now; return instances per second between the recent samples."""
        count = int(self.store_metrics(store).get("instanceCount", "0"))
        samples = self._samples.setdefault(store, deque(maxlen=61))
        samples.append((time.monotonic(), count))
        points = list(samples)
        return [(t1 - points[0][0], max(0.0, (c1 - c0) / (t1 - t0)) if t1 > t0 else 0.0)
                for (t0, c0), (t1, c1) in itertools.pairwise(points)]


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=3)
        return True
    except requests.RequestException:
        return False


def _storage_message(exc: Exception) -> str:
    status = http_status(exc)
    if status == 404:
        return "HTTP 404: the bucket does not exist"
    message = getattr(exc, "message", None) or str(exc)
    return f"HTTP {status}: {message}"[:300] if status else f"{type(exc).__name__}: {message}"[:300]


def _filter_config(filter_uri: str) -> dict[str, Any]:
    if not filter_uri.strip():
        return {}
    try:
        return {"filterConfig": {"resourcePathsGcsUri": str(GcsUri.from_string(filter_uri.strip()))}}
    except ValueError as exc:
        raise ConsoleError(f"filter file {filter_uri.strip()!r}: {exc}") from exc


def _store_name(store: str) -> DicomStoreName:
    try:
        return DicomStoreName.from_string(store)
    except ValueError as exc:
        raise ConsoleError(f"store {store!r}: {exc}") from exc


def _check_id(value: str, what: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,256}", value or ""):
        raise ConsoleError(f"{what} {value!r}: use 1-256 letters, digits, '_', '-' or '.'")


def _dicom_date(value: str) -> str:
    """An HTML date input (YYYY-MM-DD) as a DICOM DA (YYYYMMDD); empty stays empty (an open range end)."""
    digits = value.strip().replace("-", "")
    if digits and (len(digits) != 8 or not digits.isdigit()):
        raise ConsoleError(f"date {value!r}: expected YYYY-MM-DD")
    return digits
