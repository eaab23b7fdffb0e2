"""DICOMweb (STOW-RS, QIDO-RS, WADO-RS, deletes) under .../dicomStores/{store}/dicomWeb/{path}.

This module routes within dicomWeb, negotiates media types and serialises answers; matching lives in
qido.py, multipart framing in multipart.py, and every pixel operation (transcoding, frames, rendering) in
dicom/pixels.py, shared with exports. Metadata comes from the DICOM JSON stored at ingest time; instances,
bulk data, frames and rendered images read the Part-10 blob.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pydicom.uid import UID

from ...dicom import bulkdata, pixels
from ...dicom.parsing import InvalidDicom, parse_instance
from ...errors import (
    InvalidArgument,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    Unimplemented,
    UnsupportedMediaType,
)
from ...jobs.ingest import CHECKSUM_MISMATCH
from ...names import DicomStoreName, check_uid
from ...store import qido
from ...store.dicom_store import CONFLICT, InstanceRecord
from .. import multipart
from ..http import Request, Response, json_response
from .common import existing_store, store_name

if TYPE_CHECKING:
    from ...app import Emulator

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
EXPLICIT_LE = pixels.EXPLICIT_LE
OCTETS = "application/octet-stream"
# STOW failure reason (0008,1197) the real API reports for every failed instance: 0x0110 "Processing failure".
FAILURE_PROCESSING = 272
# Google puts a human-readable reason in a private element of each FailedSOPSequence item.
PRIVATE_CREATOR_TAG, PRIVATE_CREATOR, FAILURE_DETAIL_TAG = "00090010", "GOOGLE", "00090097"
_DELETE_METHOD = "google.cloud.healthcare.{version}.dicomweb.DicomWebService.{method}"
_EMPTY_RESPONSE = "type.googleapis.com/google.protobuf.Empty"
# Per-frame media types of encapsulated transfer syntaxes (PS3.18 Table 8.7.3-5); others are octet-stream.
_FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc", "1.2.840.10008.1.2.4.110": "image/jxl",
    "1.2.840.10008.1.2.4.112": "image/jxl", "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.8.1": "application/x-deflate",
}
_UID_LABELS = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "instance": "SOPInstanceUID"}


@dataclass(frozen=True)
class _Context:
    app: Emulator
    request: Request
    store: DicomStoreName
    store_id: int

    @property
    def service(self) -> str:
        """The DICOMweb service root the client used, for RetrieveURL and BulkDataURI values."""
        return f"{self.request.base_url}/{self.request.version}/{self.store}/dicomWeb"

    def url(self, study: str, series: str | None = None, instance: str | None = None) -> str:
        url = f"{self.service}/studies/{study}"
        if series is not None:
            url += f"/series/{series}"
            if instance is not None:
                url += f"/instances/{instance}"
        return url


Handler = Callable[[_Context, dict[str, str], list[str]], Response]


# --- routing -----------------------------------------------------------------------------------------


def handle(app: Emulator, request: Request, **params: str) -> Response:
    name = store_name(params)
    store_id, _ = existing_store(app, name)
    context = _Context(app, request, name, store_id)
    methods, uids, rest = _resolve(params["path"])
    handler = methods.get(request.method)
    if handler is None:
        raise MethodNotAllowed(f"method {request.method} is not supported on dicomWeb/{params['path']}")
    for key, value in uids.items():
        check_uid(value, _UID_LABELS[key])
    return handler(context, uids, rest)


def _resolve(path: str) -> tuple[dict[str, Handler], dict[str, str], list[str]]:
    segments = path.split("/")
    for pattern, methods in _ROUTES:
        found = _match(pattern, segments)
        if found is not None:
            return methods, *found
    raise NotFound(f"unknown DICOMweb path {path!r}: see the DICOMweb resources in PS3.18 10")


def _match(pattern: tuple[str, ...], segments: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """UIDs and the remaining parameters (frame list, bulk data path) when `segments` fit `pattern`."""
    tail = pattern[-1] == "{rest}"  # {rest} takes one or more trailing segments
    fits = len(segments) >= len(pattern) if tail else len(segments) == len(pattern)
    if not fits:
        return None
    if any(not segment for segment in segments):
        return None  # empty segments (a//b, trailing slash) name no resource
    uids: dict[str, str] = {}
    rest: list[str] = segments[len(pattern) - 1:] if tail else []
    for expected, actual in zip(pattern[:-1] if tail else pattern, segments, strict=False):
        if expected in ("{study}", "{series}", "{instance}"):
            uids[expected[1:-1]] = actual
        elif expected == "{frames}":
            rest = [actual]
        elif expected != actual:
            return None
    return uids, rest


# --- QIDO-RS -----------------------------------------------------------------------------------------


def _search(level: str, *upper_levels: str) -> Handler:
    def run(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
        _negotiate_json(context.request)
        query = qido.parse_query(parse_qsl(context.request.query_string, keep_blank_values=True))
        study, series = uids.get("study"), uids.get("series")
        storage = context.app.storage
        if study is not None:
            records = storage.find_instances(context.store_id, study_uid=study)
        elif (wanted := query.uid_values(qido.TAG_STUDY_UID)) is not None:
            # Whole studies only, so counts stay right; this keeps StudyInstanceUID lookups cheap.
            records = [r for uid in sorted(set(wanted)) for r in storage.find_instances(context.store_id,
                                                                                        study_uid=uid)]
        else:
            records = storage.find_instances(context.store_id)
        found = qido.search(records, query, level, context.url, study_uid=study, series_uid=series,
                            upper_levels=upper_levels)
        headers = {}
        if found.warnings:
            headers["Warning"] = ", ".join(f"299 {context.service}: {text}" for text in found.warnings)
        if not found.results:
            # The real API answers an empty search with 204 No Content and no body.
            return Response(204, b"", DICOM_JSON, headers)
        return Response(200, _json_bytes(found.results), DICOM_JSON, headers)

    return run


def _negotiate_json(request: Request) -> None:
    """QIDO and metadata answer in DICOM JSON only; XML (PS3.19) is not emulated."""
    ranges = _accept(request)
    for media in ranges:
        if media.mime in ("*/*", "application/*", DICOM_JSON, "application/json"):
            return
    raise NotAcceptable(
        f"cannot satisfy Accept {request.headers.get('accept')!r}: this resource is served as {DICOM_JSON}"
        " (application/dicom+xml is not emulated)"
    )


def _accept(request: Request) -> list[multipart.MediaType]:
    try:
        return multipart.parse_accept(request.headers.get("accept"))
    except multipart.MultipartError as exc:
        raise InvalidArgument(f"invalid Accept header: {exc}") from None


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- WADO-RS -----------------------------------------------------------------------------------------


def _records(context: _Context, uids: dict[str, str]) -> list[InstanceRecord]:
    records = context.app.storage.find_instances(
        context.store_id, study_uid=uids["study"], series_uid=uids.get("series"), sop_uid=uids.get("instance"))
    if not records:
        if "instance" in uids:
            what = f"instance {uids['instance']} of series {uids['series']} of study {uids['study']}"
        elif "series" in uids:
            what = f"series {uids['series']} of study {uids['study']}"
        else:
            what = f"study {uids['study']}"
        raise NotFound(f"{what} not found in DICOM store {context.store}")
    return records


def _retrieve(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
    records = _records(context, uids)
    single, syntax = _negotiate_dicom(context.request, "instance" in uids)
    parts = []
    for record in records:
        data = context.app.storage.blob_path(context.store_id, record.sha256).read_bytes()
        if syntax not in (pixels.AS_STORED, record.transfer_syntax_uid):
            try:
                data = pixels.transcode(data, syntax)
            except pixels.PixelError as exc:
                raise NotAcceptable(f"cannot transcode instance {record.sop_uid} from"
                                    f" {record.transfer_syntax_uid} to {syntax}: {exc}; ask for transfer-syntax=*"
                                    " to get it as stored") from None
        served = record.transfer_syntax_uid if syntax == pixels.AS_STORED else syntax
        parts.append((f"application/dicom; transfer-syntax={served}", data))
    if single:
        return Response(200, parts[0][1], parts[0][0])
    body, content_type = multipart.encode_related(parts, "application/dicom")
    return Response(200, body, content_type)


def _negotiate_dicom(request: Request, instance: bool) -> tuple[bool, str]:
    """(single part, transfer syntax or "*") for a study/series/instance retrieve.

    Without a transfer-syntax parameter the answer is explicit VR little endian, the real API's default (its
    conformance statement): compressed instances come back decompressed; `transfer-syntax=*` serves them as stored.
    """
    reasons = []
    for media in _accept(request):
        single = media.mime == "application/dicom"
        if single and not instance:
            reasons.append("a single-part application/dicom answer exists only for one instance")
            continue
        if media.mime == "multipart/related":
            kind = media.params.get("type", "application/dicom").lower()
            if kind not in ("application/dicom", "application/*", "*/*"):
                reasons.append(f"type {kind!r} is not available for this resource")
                continue
        elif media.mime not in ("*/*", "application/*", "multipart/*") and not single:
            reasons.append(f"{media.mime!r} is not available for this resource")
            continue
        syntax = media.params.get("transfer-syntax") or EXPLICIT_LE
        reason = _unwritable(syntax)
        if reason is None:
            return single, syntax
        reasons.append(reason)
    raise NotAcceptable(f"cannot satisfy Accept {request.headers.get('accept')!r}: {'; '.join(reasons)}")


def _unwritable(syntax: str) -> str | None:
    """Why the emulator cannot answer in `syntax` ("*" = as stored), or None when it can."""
    if syntax == pixels.AS_STORED or syntax in pixels.TRANSCODE_TARGETS:
        return None
    if syntax in pixels.NOT_EMULATED_TARGETS:
        return (f"transfer-syntax={syntax} ({pixels.NOT_EMULATED_TARGETS[syntax]}) is served by the real API but"
                " no encoder for it is installed in the emulator")
    return (f"transfer-syntax={syntax} is not one the Cloud Healthcare API serves; supported: *, "
            + ", ".join(pixels.TRANSCODE_TARGETS))


def _metadata(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
    """Stored DICOM JSON without file meta (group 0002 is not part of the data set, as in dcm2json),
    with relative BulkDataURIs made absolute below each instance's URL."""
    _negotiate_json(context.request)
    pieces = []
    for record in _records(context, uids):
        metadata = json.loads(record.metadata)
        for tag in [t for t in metadata if t.startswith("0002")]:
            del metadata[tag]
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        prefix = json.dumps(context.url(record.study_uid, record.series_uid, record.sop_uid))[1:-1]
        # In compact JSON this exact byte sequence can only be a BulkDataURI key and the start of its value:
        # quotes inside string values are escaped.
        pieces.append(text.replace('"BulkDataURI":"bulkdata/', f'"BulkDataURI":"{prefix}/bulkdata/'))
    return Response(200, ("[" + ",".join(pieces) + "]").encode("utf-8"), DICOM_JSON)


def _instance_bytes(context: _Context, uids: dict[str, str]) -> tuple[InstanceRecord, bytes]:
    record = _records(context, uids)[0]
    return record, context.app.storage.blob_path(context.store_id, record.sha256).read_bytes()


def _bulkdata(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
    try:
        steps, last = bulkdata.parse_path(rest)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    single, wanted = _negotiate_bulkdata(context.request)
    record, data = _instance_bytes(context, uids)
    try:
        value, syntax = bulkdata.value(data, steps, last)
    except bulkdata.BulkDataNotFound as exc:
        raise NotFound(f"bulk data {'/'.join(rest)} not found in instance {record.sop_uid}: {exc}") from None
    if wanted not in (pixels.AS_STORED, syntax):
        raise NotAcceptable(f"bulk data {'/'.join(rest)} is encapsulated {syntax} pixel data, not {wanted}; ask"
                            " for transfer-syntax=* or retrieve its frames")
    content_type = f"{OCTETS}; transfer-syntax={syntax}"
    if single:
        return Response(200, value, content_type)
    body, multipart_type = multipart.encode_related([(content_type, value)], OCTETS)
    return Response(200, body, multipart_type)


def _negotiate_bulkdata(request: Request) -> tuple[bool, str]:
    """(single part, transfer syntax) for bulk data: octet-stream, multipart (default) or single part; the real
    API's default transfer syntax here is "*" (as stored)."""
    reasons = []
    for media in _accept(request):
        kind = media.params.get("type", OCTETS).lower() if media.mime == "multipart/related" else media.mime
        if media.mime in ("*/*", "multipart/*", "application/*") or kind in ("*/*", OCTETS):
            syntax = media.params.get("transfer-syntax") or pixels.AS_STORED
            if syntax in (pixels.AS_STORED, EXPLICIT_LE):
                return media.mime == OCTETS, syntax
            reasons.append(f"bulk data is served with transfer-syntax=* or {EXPLICIT_LE}, not {syntax}")
            continue
        reasons.append(f"{kind!r} is not available for bulk data (use {OCTETS})")
    raise NotAcceptable(f"cannot satisfy Accept {request.headers.get('accept')!r}: {'; '.join(reasons)}")


def _frames(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
    numbers = _frame_numbers(rest[0])
    wanted = _negotiate_frames(context.request)
    record, data = _instance_bytes(context, uids)
    found, syntax = _pixel_call(record, lambda: pixels.frames(data, wanted, numbers), f"frames as {wanted}")
    media_type = _FRAME_MEDIA_TYPES.get(syntax, OCTETS) if UID(syntax).is_encapsulated else OCTETS
    body, content_type = multipart.encode_related(
        [(f"{media_type}; transfer-syntax={syntax}", frame) for frame in found], media_type)
    return Response(200, body, content_type)


def _negotiate_frames(request: Request) -> str:
    """The transfer syntax (or "*") to serve frames in; the real API's default is octet-stream explicit VR LE."""
    reasons = []
    for media in _accept(request):
        if media.mime not in ("*/*", "multipart/*", "multipart/related"):
            reasons.append(f"{media.mime!r} is not available for frames (use multipart/related)")
            continue
        kind = media.params.get("type", OCTETS).lower() if media.mime == "multipart/related" else "*/*"
        syntax = media.params.get("transfer-syntax")
        if kind in ("*/*", OCTETS):
            syntax = syntax or EXPLICIT_LE
            if syntax == pixels.AS_STORED or (kind == "*/*" and _unwritable(syntax) is None):
                return syntax
            if syntax == EXPLICIT_LE:
                return syntax
            reasons.append(f"type {kind!r} comes with transfer-syntax=* or {EXPLICIT_LE}, not {syntax}")
            continue
        syntaxes = [uid for uid, frame_type in _FRAME_MEDIA_TYPES.items() if frame_type == kind]
        if not syntaxes:
            reasons.append(f"type {kind!r} is not emulated for frames" if kind == "image/png" else
                           f"type {kind!r} is not a frame media type")
            continue
        syntax = syntax or syntaxes[0]
        reason = _unwritable(syntax) if syntax in syntaxes else f"type {kind!r} does not carry {syntax}"
        if reason is None:
            return syntax
        reasons.append(reason)
    raise NotAcceptable(f"cannot satisfy Accept {request.headers.get('accept')!r}: {'; '.join(reasons)}")


def _frame_numbers(text: str) -> list[int]:
    numbers = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece.isdigit() or int(piece) < 1:
            raise InvalidArgument(f"invalid frame list {text!r}: frames are numbered from 1, e.g. frames/1,2")
        numbers.append(int(piece))
    return numbers


def _pixel_call(record: InstanceRecord, call: Callable[[], Any], what: str) -> Any:
    """Run pixel work for one instance; its errors as the real API's statuses (conformance statement: 400 for
    missing pixel data, 406 when the acceptable media type cannot be produced)."""
    try:
        return call()
    except pixels.FrameNotFound as exc:
        raise NotFound(f"instance {record.sop_uid}: {exc}") from None
    except (pixels.NoPixelData, pixels.InvalidViewport) as exc:
        raise InvalidArgument(f"instance {record.sop_uid}: {exc}") from None
    except pixels.PixelError as exc:
        raise NotAcceptable(f"cannot produce {what} of instance {record.sop_uid} (stored as"
                            f" {record.transfer_syntax_uid}): {exc}") from None


def _rendered(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
    """Instance (its first frame) or frames as image/jpeg (default) or image/png, with an optional viewport."""
    if "instance" not in uids:
        raise InvalidArgument("rendered study and series resources are not supported by the Cloud Healthcare API"
                              " (only instances and frames, per its DICOM conformance statement); render each"
                              " instance with …/instances/{uid}/rendered")
    numbers = _frame_numbers(rest[0]) if rest else [1]
    image_format = _negotiate_rendered(context.request)
    viewport_text = context.request.query.get("viewport", [None])[-1]
    try:
        viewport = pixels.Viewport.parse(viewport_text) if viewport_text is not None else None
    except pixels.InvalidViewport as exc:
        raise InvalidArgument(str(exc)) from None
    record, data = _instance_bytes(context, uids)
    images = _pixel_call(record, lambda: pixels.render(data, image_format, numbers, viewport),
                         f"a rendered {image_format.upper()}")
    media_type = f"image/{image_format}"
    if len(images) == 1:
        return Response(200, images[0], media_type)
    body, content_type = multipart.encode_related([(media_type, image) for image in images], media_type)
    return Response(200, body, content_type)


def _negotiate_rendered(request: Request) -> str:
    for media in _accept(request):
        if media.mime in ("*/*", "image/*", "image/jpeg"):
            return "jpeg"
        if media.mime == "image/png":
            return "png"
    raise NotAcceptable(f"cannot satisfy Accept {request.headers.get('accept')!r}: rendered resources are served"
                        " as image/jpeg (default) or image/png")


# --- STOW-RS -----------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    sop_class_uid: str | None
    sop_uid: str | None
    study_uid: str | None
    series_uid: str | None
    failure: str | None = None  # None when stored (or an identical duplicate)


def _store(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
    _check_store_accept(context.request)
    bodies = _stow_bodies(context.request)
    target = uids.get("study")
    outcomes = [_store_one(context, data, target, number) for number, data in enumerate(bodies, start=1)]
    response: dict[str, Any] = {}
    studies = {o.study_uid for o in outcomes if o.study_uid}
    if target or len(studies) == 1:
        response["00081190"] = {"vr": "UR", "Value": [context.url(target or studies.pop())]}
    failed = [o for o in outcomes if o.failure is not None]
    stored = [o for o in outcomes if o.failure is None]
    if failed:
        response["00081198"] = {"vr": "SQ", "Value": [_failed_item(o) for o in failed]}
    if stored:
        response["00081199"] = {"vr": "SQ", "Value": [{
            "00081150": {"vr": "UI", "Value": [o.sop_class_uid]},
            "00081155": {"vr": "UI", "Value": [o.sop_uid]},
            "00081190": {"vr": "UR", "Value": [context.url(o.study_uid or "", o.series_uid, o.sop_uid)]},
        } for o in stored]}
    # PS3.18 10.5.3: 200 all stored, 202 some stored with failures, 409 none stored (the real API's code).
    status = 200 if not failed else 202 if stored else 409
    return Response(status, _json_bytes(response), DICOM_JSON)


def _stow_bodies(request: Request) -> list[bytes]:
    header = request.headers.get("content-type")
    if not header:
        raise UnsupportedMediaType(
            'STOW-RS needs a Content-Type: application/dicom or multipart/related; type="application/dicom"')
    try:
        media = multipart.parse_media_type(header)
    except multipart.MultipartError as exc:
        raise UnsupportedMediaType(f"invalid Content-Type {header!r}: {exc}") from None
    if not request.body:
        raise InvalidArgument("the STOW-RS request body is empty")
    if media.mime == "application/dicom":
        return [request.body]
    if media.mime != "multipart/related":
        raise UnsupportedMediaType(
            f'unsupported Content-Type {header!r} for STOW-RS: use application/dicom or multipart/related;'
            ' type="application/dicom"')
    kind = media.params.get("type", "application/dicom").lower()
    if kind in (DICOM_JSON, DICOM_XML):
        raise Unimplemented(f"STOW-RS of metadata and bulk data (type={kind}) is not emulated yet; send"
                            ' Part-10 instances as multipart/related; type="application/dicom"')
    if kind != "application/dicom":
        raise UnsupportedMediaType(f'unsupported multipart type {kind!r} for STOW-RS: use type="application/dicom"')
    boundary = media.params.get("boundary")
    if not boundary:
        raise InvalidArgument(f"malformed multipart request: Content-Type {header!r} has no boundary parameter")
    try:
        parts = multipart.decode(request.body, boundary)
    except multipart.MultipartError as exc:
        raise InvalidArgument(f"malformed multipart request: {exc}") from None
    if not parts:
        raise InvalidArgument("malformed multipart request: the body has no parts")
    bodies = []
    for number, part in enumerate(parts, start=1):
        if part.content_type:
            try:
                part_type = multipart.parse_media_type(part.content_type).mime
            except multipart.MultipartError as exc:
                raise InvalidArgument(f"malformed multipart request: part {number}: {exc}") from None
            if part_type != "application/dicom":
                raise UnsupportedMediaType(f"part {number} has Content-Type {part.content_type!r}; every part must"
                                           " be application/dicom")
        bodies.append(part.content)
    return bodies


def _store_one(context: _Context, data: bytes, target: str | None, number: int) -> _Outcome:
    try:
        parsed = parse_instance(data)
        if target is not None and parsed.study_uid != target:
            # Checked before storing, so an instance of another study never lands in the store.
            return _Outcome(parsed.sop_class_uid, parsed.sop_uid, None, None,
                            f"the instance belongs to study {parsed.study_uid}, not to the study in the request"
                            f" path {target}")
        result = context.app.ingest.store_bytes(str(context.store), context.store_id, data, parsed=parsed)
    except InvalidDicom as exc:
        return _Outcome(None, None, None, None, f"part {number}: {exc}")
    parsed = result.parsed
    failure = CHECKSUM_MISMATCH if result.outcome == CONFLICT else None
    return _Outcome(parsed.sop_class_uid, parsed.sop_uid, parsed.study_uid, parsed.series_uid, failure)


def _failed_item(outcome: _Outcome) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if outcome.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [outcome.sop_class_uid]}
    if outcome.sop_uid:
        item["00081155"] = {"vr": "UI", "Value": [outcome.sop_uid]}
    item["00081197"] = {"vr": "US", "Value": [FAILURE_PROCESSING]}
    item[PRIVATE_CREATOR_TAG] = {"vr": "LO", "Value": [PRIVATE_CREATOR]}
    item[FAILURE_DETAIL_TAG] = {"vr": "LT", "Value": [outcome.failure]}
    return item


def _check_store_accept(request: Request) -> None:
    """The store response is DICOM JSON; a client that accepts only DICOM XML gets a 406 before anything is stored."""
    ranges = _accept(request)
    if ranges and all(m.mime in (DICOM_XML, "application/xml") for m in ranges):
        raise NotAcceptable(f"cannot satisfy Accept {request.headers.get('accept')!r}: the store response is"
                            f" served as {DICOM_JSON} (application/dicom+xml is not emulated)")


# --- deletes -----------------------------------------------------------------------------------------


def _delete(context: _Context, uids: dict[str, str], rest: list[str]) -> Response:
    records = _records(context, uids)  # NotFound when nothing matches, before any operation starts
    storage = context.app.storage
    if "instance" in uids:
        storage.delete_instances(context.store_id, records)
        return json_response({})
    method = "DeleteSeries" if "series" in uids else "DeleteStudy"

    def job(operation: Any) -> None:
        # Look again: instances stored after the request are part of the study or series being deleted.
        current = storage.find_instances(context.store_id, study_uid=uids["study"], series_uid=uids.get("series"))
        storage.delete_instances(context.store_id, current)

    version = context.request.version
    operation = context.app.engine.start(context.store.dataset_name,
                                         _DELETE_METHOD.format(version=version, method=method), job, version,
                                         _EMPTY_RESPONSE)
    return json_response(operation)


# --- route table -------------------------------------------------------------------------------------

_INSTANCE = ("studies", "{study}", "series", "{series}", "instances", "{instance}")
_ROUTES: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
    (("studies",), {"GET": _search(qido.STUDY), "POST": _store}),
    (("series",), {"GET": _search(qido.SERIES, qido.STUDY)}),
    (("instances",), {"GET": _search(qido.INSTANCE, qido.STUDY, qido.SERIES)}),
    (("studies", "{study}"), {"GET": _retrieve, "POST": _store, "DELETE": _delete}),
    (("studies", "{study}", "metadata"), {"GET": _metadata}),
    (("studies", "{study}", "rendered"), {"GET": _rendered}),
    (("studies", "{study}", "series"), {"GET": _search(qido.SERIES)}),
    (("studies", "{study}", "instances"), {"GET": _search(qido.INSTANCE, qido.SERIES)}),
    (("studies", "{study}", "series", "{series}"), {"GET": _retrieve, "DELETE": _delete}),
    (("studies", "{study}", "series", "{series}", "metadata"), {"GET": _metadata}),
    (("studies", "{study}", "series", "{series}", "rendered"), {"GET": _rendered}),
    (("studies", "{study}", "series", "{series}", "instances"), {"GET": _search(qido.INSTANCE)}),
    (_INSTANCE, {"GET": _retrieve, "DELETE": _delete}),
    ((*_INSTANCE, "metadata"), {"GET": _metadata}),
    ((*_INSTANCE, "rendered"), {"GET": _rendered}),
    ((*_INSTANCE, "frames", "{frames}"), {"GET": _frames}),
    ((*_INSTANCE, "frames", "{frames}", "rendered"), {"GET": _rendered}),
    ((*_INSTANCE, "bulkdata", "{rest}"), {"GET": _bulkdata}),
]
