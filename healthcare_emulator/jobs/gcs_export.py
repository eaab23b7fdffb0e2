"""dicomStores.export to Cloud Storage (gcsDestination): one object per instance, or per frame for image formats.

Object names (reference §4.3): `{uriPrefix}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}{ext}`; in the
frame formats (image/jpeg, image/png, application/octet-stream) an instance with more than one frame is written
as `…/{SOPInstanceUID}/{frame}{ext}` instead, frames numbered from 1 as DICOM numbers them. Extensions: `.dcm`,
`.jpg`, `.png`, none for octet-stream. Existing objects are overwritten.

Counters count instances: an instance is one success once all its objects are written, or one failure (with
its reason in the operation log) when its format cannot be produced or a write fails; the others go on. Like
import, an operation with failures ends with INVALID_ARGUMENT "N of M instances failed to export".

Objects are written with google-cloud-storage to the Cloud Storage the emulator reads (GcsReader's endpoint:
the storage emulator without credentials, or real Cloud Storage with application default credentials).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..dicom import pixels
from ..errors import InvalidArgument, NotFound, Unimplemented
from ..names import DicomStoreName
from ..store.dicom_store import InstanceRecord, Storage
from .cloud_storage import GcsReader, storage_client
from .export_selection import load_filter, select_records
from .operations import OperationContext

logger = logging.getLogger(__name__)

DICOM, JPEG, PNG, OCTETS = "application/dicom", "image/jpeg", "image/png", "application/octet-stream"
AS_STORED = "*"
_EXTENSIONS = {DICOM: ".dcm", JPEG: ".jpg", PNG: ".png", OCTETS: ""}
_BUCKET_URI = re.compile(r"gs://([a-z0-9][a-z0-9._\-]{1,220}[a-z0-9])(?:/(.*))?", re.DOTALL)
_WORKERS = 8  # instances processed at once: codecs, numpy, zlib and uploads release the GIL
_IN_FLIGHT = _WORKERS * 2  # submitted and not finished, so workers never wait for this thread


@dataclass(frozen=True)
class ExportFormat:
    """What `gcsDestination.mimeType` asks for: a media type and a transfer syntax ('*' = as stored)."""

    mime_type: str  # as the request spelled it; "" when unset
    media_type: str
    transfer_syntax: str  # a UID or "*"; "" for rendered images

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self.media_type]

    @property
    def per_frame(self) -> bool:
        return self.media_type != DICOM

    def payloads(self, data: bytes) -> list[bytes]:
        """The object bodies for one stored instance: one, or one per frame. Raises pixels.PixelError."""
        if self.media_type == DICOM:
            return [data if self.transfer_syntax == AS_STORED else pixels.transcode(data, self.transfer_syntax)]
        if self.media_type == JPEG:
            return pixels.render(data, "jpeg")
        if self.media_type == PNG:
            return pixels.render(data, "png")
        return pixels.frames(data, self.transfer_syntax)[0]


def supported_mime_types() -> list[str]:
    """Every mimeType value the emulator writes (plain `type` forms included), for error messages."""
    dicom = [f"{DICOM}; transfer-syntax={syntax}" for syntax in (*pixels.TRANSCODE_TARGETS, AS_STORED)]
    return [
        *dicom, DICOM,
        f"{OCTETS}; transfer-syntax={pixels.EXPLICIT_LE}", f"{OCTETS}; transfer-syntax={AS_STORED}", OCTETS,
        f"{JPEG}; transfer-syntax={pixels.JPEG_BASELINE}", JPEG,
        PNG,
    ]


def parse_mime_type(value: Any) -> ExportFormat:
    """`type` or `type; transfer-syntax=UID` (§4.3). Type and parameter name are case-insensitive (RFC 2045),
    spaces around `;` and `=` and a quoted value are allowed; anything else is an error naming the value.

    Unset or empty: the instances as stored. `application/dicom` alone means explicit VR little endian, the
    default transfer syntax of application/dicom in DICOMweb (PS3.18 8.7.3.5.2), as `application/octet-stream`
    alone does for octet-stream; `image/jpeg` alone is JPEG baseline.
    """
    if value is None or value == "":
        return ExportFormat("", DICOM, AS_STORED)
    if not isinstance(value, str):
        raise InvalidArgument(f"gcsDestination.mimeType must be a string, got {value!r}")
    media_type, syntax = _split_mime_type(value)
    defaults = {DICOM: pixels.EXPLICIT_LE, OCTETS: pixels.EXPLICIT_LE, JPEG: pixels.JPEG_BASELINE}
    allowed: dict[str, tuple[str, ...]] = {
        DICOM: (*pixels.TRANSCODE_TARGETS, AS_STORED),
        OCTETS: (pixels.EXPLICIT_LE, AS_STORED),
        JPEG: (pixels.JPEG_BASELINE,),
        PNG: (),
    }
    if media_type in allowed and syntax is None:
        return ExportFormat(value, media_type, defaults.get(media_type, ""))
    if media_type in allowed and syntax in allowed[media_type]:
        return ExportFormat(value, media_type, syntax)
    if media_type == DICOM and syntax in pixels.NOT_EMULATED_TARGETS:
        raise Unimplemented(
            f"gcsDestination.mimeType {value!r}: the emulator cannot write {pixels.NOT_EMULATED_TARGETS[syntax]}"
            f" ({syntax}), which the real API accepts; no encoder for it is installed. Supported here: "
            + ", ".join(supported_mime_types()))
    raise InvalidArgument(f"unsupported gcsDestination.mimeType {value!r}; supported values: "
                          + ", ".join(supported_mime_types()))


def _split_mime_type(value: str) -> tuple[str, str | None]:
    parts = value.split(";")
    media_type = parts[0].strip().lower()
    syntax: str | None = None
    for part in parts[1:]:
        name, equals, parameter = part.partition("=")
        parameter = parameter.strip()
        if len(parameter) >= 2 and parameter[0] == parameter[-1] == '"':
            parameter = parameter[1:-1].strip()
        if not equals or name.strip().lower() != "transfer-syntax" or syntax is not None or not parameter:
            raise InvalidArgument(f"unsupported gcsDestination.mimeType {value!r}: the only parameter is one"
                                  " transfer-syntax=UID, as in 'application/dicom; transfer-syntax=*'; supported"
                                  " values: " + ", ".join(supported_mime_types()))
        syntax = parameter
    return media_type, syntax


def parse_uri_prefix(value: Any) -> tuple[str, str]:
    """`gs://BUCKET[/PREFIX][/]` into (bucket, prefix without trailing slashes)."""
    if not value:
        raise InvalidArgument("gcsDestination.uriPrefix is required, e.g. gs://BUCKET/DIRECTORY")
    match = _BUCKET_URI.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise InvalidArgument(f"gcsDestination.uriPrefix {value!r} is not a Cloud Storage location of the form"
                              " gs://BUCKET[/DIRECTORY]")
    prefix = (match.group(2) or "").rstrip("/")
    if "\r" in prefix or "\n" in prefix:
        raise InvalidArgument(f"gcsDestination.uriPrefix {value!r}: object names cannot contain line breaks")
    return match.group(1), prefix


def object_names(prefix: str, record: InstanceRecord, export_format: ExportFormat, objects: int) -> list[str]:
    """Where an instance's objects go: one name, or one per frame (1-based) for a multi-frame frame format."""
    base = f"{record.study_uid}/{record.series_uid}/{record.sop_uid}"
    if prefix:
        base = f"{prefix}/{base}"
    extension = export_format.extension
    if export_format.per_frame and objects > 1:
        return [f"{base}/{number}{extension}" for number in range(1, objects + 1)]
    return [f"{base}{extension}"]


class GcsWriter:
    """Writes objects with google-cloud-storage; one client per thread, as GcsReader keeps them."""

    def __init__(self, emulator_host: str | None) -> None:
        self._emulator_host = emulator_host
        self._local = threading.local()

    def _client(self):  # type: ignore[no-untyped-def]
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = storage_client(self._emulator_host)
        return client

    def check_bucket(self, bucket: str) -> None:
        """NotFound when the bucket does not exist (the user must create it, §4.3)."""
        from google.api_core import exceptions

        try:
            self._client().get_bucket(bucket)
        except exceptions.NotFound:
            raise NotFound(f"Cloud Storage bucket gs://{bucket} not found; create it before exporting") from None
        except exceptions.Forbidden:
            pass  # why: object-level permissions can write without reading bucket metadata; writes will tell

    def write(self, bucket: str, name: str, data: bytes, content_type: str) -> None:
        self._client().bucket(bucket).blob(name).upload_from_string(data, content_type=content_type)


def export_job(storage: Storage, gcs: GcsReader, store: DicomStoreName, store_id: int, destination: dict[str, Any],
               filter_uri: str | None) -> Callable[[OperationContext], None]:
    """Validate the destination now (InvalidArgument) and return the operation's job."""
    if not isinstance(destination, dict):
        raise InvalidArgument("gcsDestination must be an object with uriPrefix and an optional mimeType")
    bucket, prefix = parse_uri_prefix(destination.get("uriPrefix"))
    export_format = parse_mime_type(destination.get("mimeType"))
    writer = GcsWriter(gcs.emulator_host)
    content_type = export_format.media_type

    def export_instance(record: InstanceRecord) -> str | None:
        """Write one instance's objects; None on success, else the reason it failed."""
        try:
            data = storage.blob_path(store_id, record.sha256).read_bytes()
        except FileNotFoundError:
            return "the instance was deleted from the store while the export ran"
        try:
            bodies = export_format.payloads(data)
        except pixels.PixelError as exc:
            return f"cannot export as {export_format.mime_type or 'stored'}: {exc}"
        names = object_names(prefix, record, export_format, len(bodies))
        for name, body in zip(names, bodies, strict=True):
            try:
                writer.write(bucket, name, body, content_type)
            except Exception as exc:  # a failed write fails this instance only
                return f"could not write gs://{bucket}/{name}: {type(exc).__name__}: {exc}"
        return None

    def run(context: OperationContext) -> None:
        resource_filter = load_filter(gcs, filter_uri)
        writer.check_bucket(bucket)
        records = select_records(storage, store_id, resource_filter)
        context.add(pending=len(records))
        _export_all(records, export_instance, context)
        context.check_cancelled()
        failures = context.counters["failure"]
        if failures:
            raise InvalidArgument(
                f"{failures} of {len(records)} instances failed to export; each instance's reason is in the"
                " operation log at metadata.logsUrl"
            )

    return run


def _export_all(records: list[InstanceRecord], export_instance: Callable[[InstanceRecord], str | None],
                context: OperationContext) -> None:
    """Export instances on a few threads, counting each as it finishes; stop submitting on cancel."""
    queue = iter(records)
    running: dict[Future[str | None], InstanceRecord] = {}
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="gcs-export") as pool:
        while True:
            while len(running) < _IN_FLIGHT and not context.cancel_requested:
                record = next(queue, None)
                if record is None:
                    break
                running[pool.submit(export_instance, record)] = record
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                record = running.pop(future)
                try:
                    reason = future.result()
                except Exception as exc:  # an emulator bug: this instance fails, the export goes on
                    logger.exception("export of %s crashed", _instance_path(record))
                    reason = f"internal emulator error: {type(exc).__name__}: {exc}"
                if reason is None:
                    context.add(success=1, pending=-1)
                else:
                    context.add(failure=1, pending=-1)
                    context.log("ERROR", reason, resource=_instance_path(record))


def _instance_path(record: InstanceRecord) -> str:
    return f"studies/{record.study_uid}/series/{record.series_uid}/instances/{record.sop_uid}"
