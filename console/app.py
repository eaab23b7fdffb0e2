"""The console's web layer: Starlette routes, thin handlers over console.backend, Jinja2 pages, htmx fragments.

Security: state-changing requests carry the page's CSRF token (a form field or htmx's X-CSRF-Token header) and,
when the browser sends one, an Origin of this server; every DICOM value reaches the page through Jinja2's
autoescape; the request log names routes, never paths or query strings (they hold UIDs and PatientIDs).
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool as blocking  # the API calls block; the event loop must not
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import dicom_json
from .backend import (
    EXPORT_FILE_TYPES,
    STORAGE_CLASSES,
    TRANSFER_SYNTAXES,
    WRITE_DISPOSITIONS,
    Console,
    ConsoleError,
    export_mime_type,
)
from .settings import Settings

HERE = Path(__file__).parent
PAGE_SIZE = 25
THUMBNAIL_VIEWPORT = "128,128"
log = logging.getLogger("console")
_STORE_URL = re.compile(r"/datasets/[A-Za-z0-9_.\-]+/stores/[A-Za-z0-9_.\-]+")

_PLACEHOLDER = """<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">
<rect width="128" height="128" rx="6" fill="#e8ecf1"/><path d="M40 84l18-22 14 16 10-12 16 18z" fill="#b8c2cf"/>
<circle cx="50" cy="48" r="8" fill="#b8c2cf"/><text x="64" y="112" font-family="sans-serif" font-size="11"
text-anchor="middle" fill="#5b6675">no preview</text></svg>"""


def create_app(settings: Settings, page_size: int = PAGE_SIZE) -> Starlette:
    console = Console(settings)
    csrf_token = secrets.token_urlsafe(32)
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    environment.filters.update(dicom_value=dicom_json.value, person=dicom_json.display_name,
                               date=dicom_json.display_date, urlquote=lambda v: quote(str(v), safe=""),
                               cell=_cell, operation_url=_operation_url)
    templates = Jinja2Templates(env=environment)
    started: dict[str, dict[str, str]] = {}  # operation name → what the console started it for (links when done)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(settings=settings, csrf_token=csrf_token, nav=name.split(".")[0])
        return templates.TemplateResponse(request, name, context, status_code=status)

    def store_name(request: Request) -> str:
        p = request.path_params
        return f"{console.location_name}/datasets/{p['dataset']}/dicomStores/{p['store']}"

    def store_url(request: Request) -> str:
        p = request.path_params
        return f"/datasets/{p['dataset']}/stores/{p['store']}"

    async def form(request: Request) -> dict[str, str]:
        """The submitted fields, once the request has proven it comes from one of this console's pages."""
        data = {k: str(v) for k, v in (await request.form()).items()}
        refusal = _csrf_refusal(request, data.get("csrf") or request.headers.get("x-csrf-token", ""), csrf_token)
        if refusal:
            raise CsrfRefused(refusal)
        return data

    # --- pages -------------------------------------------------------------------------------------------------

    pipeline_store_url = _store_url(settings.store) if settings.store else ""
    pipeline_dataset = settings.store.rsplit("/dicomStores/", 1)[0] if settings.store else ""

    def home(request: Request) -> Response:
        return RedirectResponse(pipeline_store_url or "/datasets", 303)

    def datasets(request: Request) -> Response:
        rows = []
        for dataset in console.datasets():
            stores = []
            for store in console.stores(dataset["name"]):
                stores.append({"id": store["name"].rsplit("/", 1)[-1], "name": store["name"],
                               "metrics": console.store_metrics(store["name"])})
            rows.append({"id": dataset["name"].rsplit("/", 1)[-1], "name": dataset["name"], "stores": stores})
        return page(request, "datasets.html", datasets=rows)

    async def create_dataset(request: Request) -> Response:
        await blocking(console.create_dataset, (await form(request)).get("dataset_id", "").strip())
        return RedirectResponse("/datasets", 303)

    async def create_store(request: Request) -> Response:
        dataset = f"{console.location_name}/datasets/{request.path_params['dataset']}"
        await blocking(console.create_store, dataset, (await form(request)).get("store_id", "").strip())
        return RedirectResponse("/datasets", 303)

    def studies(request: Request) -> Response:
        q = request.query_params
        search = {k: q.get(k, "") for k in ("patient_id", "modality", "date_from", "date_to")}
        offset = _offset(q.get("offset"))
        found = console.studies(store_name(request), offset=offset, limit=page_size, **search)
        return page(request, "studies.html", store=store_url(request), store_name=store_name(request),
                    params=request.path_params, page=found, search=search, pager=_pager(found, search),
                    metrics=console.store_metrics(store_name(request)))

    def series(request: Request) -> Response:
        p = request.path_params
        found = console.series(store_name(request), p["study"], offset=_offset(request.query_params.get("offset")),
                               limit=page_size)
        return page(request, "series.html", store=store_url(request), params=p, page=found, pager=_pager(found, {}))

    def instances(request: Request) -> Response:
        p = request.path_params
        found = console.instances(store_name(request), p["study"], p["series"],
                                  offset=_offset(request.query_params.get("offset")), limit=page_size)
        return page(request, "instances.html", store=store_url(request), params=p, page=found,
                    pager=_pager(found, {}))

    def instance(request: Request) -> Response:
        p = request.path_params
        metadata = console.instance_metadata(store_name(request), p["study"], p["series"], p["instance"])
        frames = max(1, _int(dicom_json.value(metadata, "NumberOfFrames"), 1))
        return page(request, "instance.html", store=store_url(request), params=p, metadata=metadata,
                    tree=dicom_json.tree(metadata), frames=frames, frame=min(max(1, _int(
                        request.query_params.get("frame"), 1)), frames))

    def rendered(request: Request) -> Response:
        """A thumbnail or frame from the store's rendered endpoint; a placeholder image when the store refuses."""
        p = request.path_params
        store = store_name(request)
        if "instance" in p:
            target: tuple[str, str] | None = (p["series"], p["instance"])
        else:  # a study's or a series' thumbnail: its first instance's
            target = console.first_instance(store, p["study"], p.get("series"))
        if target is None:
            return _placeholder("no instances")
        frame = _int(request.query_params.get("frame"), 0) or None
        viewport = request.query_params.get("viewport") or (None if frame else THUMBNAIL_VIEWPORT)
        image = console.rendered(store, p["study"], *target, frame, viewport)
        if image.refused:
            return _placeholder(image.refused)
        return Response(image.content, media_type=image.content_type,
                        headers={"Cache-Control": "private, max-age=300"})

    def import_form(request: Request) -> Response:
        return page(request, "import.html", store=store_url(request), store_name=store_name(request),
                    params=request.path_params, storage_classes=STORAGE_CLASSES, values={})

    async def start_import(request: Request) -> Response:
        values = await form(request)
        try:
            operation = await blocking(console.start_import, store_name(request), values.get("uri", ""),
                                       values.get("storage_class", ""))
        except ConsoleError as exc:
            return page(request, "import.html", status=400, store=store_url(request), error=str(exc),
                        store_name=store_name(request), params=request.path_params,
                        storage_classes=STORAGE_CLASSES, values=values)
        started[operation["name"]] = {"kind": "import", "store": store_url(request)}
        return RedirectResponse(_operation_url(operation["name"]), 303)

    def export_form(request: Request, values: dict[str, str] | None = None, error: str = "",
                    status: int = 200) -> Response:
        table = settings.table or f"bq://{settings.project}.dicom.instances"
        defaults = {"destination": "bigquery", "table": table, "write_disposition": "WRITE_TRUNCATE",
                    "file_type": "dcm", "transfer_syntax": "*", "prefix": ""}
        return page(request, "export.html", status=status, store=store_url(request), store_name=store_name(request),
                    params=request.path_params, values={**defaults, **(values or {})}, error=error,
                    write_dispositions=WRITE_DISPOSITIONS, file_types=EXPORT_FILE_TYPES,
                    transfer_syntaxes=TRANSFER_SYNTAXES)

    def export_page(request: Request) -> Response:
        return export_form(request)

    async def start_export(request: Request) -> Response:
        values = await form(request)
        try:
            if values.get("destination") == "gcs":
                mime_type = export_mime_type(values.get("file_type", "dcm"), values.get("transfer_syntax", "*"))
                operation = await blocking(console.start_export_gcs, store_name(request), values.get("prefix", ""),
                                           mime_type, values.get("filter_uri", ""))
                started[operation["name"]] = {"kind": "export-gcs", "objects": values["prefix"].strip()}
            else:
                operation = await blocking(
                    console.start_export_bigquery, store_name(request), values.get("table", ""),
                    values.get("write_disposition", ""), values.get("overwrite") == "on", values.get("filter_uri", ""))
                started[operation["name"]] = {"kind": "export-bq", "table": values.get("table", ""),
                                              "store": store_url(request)}
        except ConsoleError as exc:
            return export_form(request, values, str(exc), 400)
        return RedirectResponse(_operation_url(operation["name"]), 303)

    def operations(request: Request) -> Response:
        dataset = request.query_params.get("dataset") or pipeline_dataset
        names = [d["name"] for d in console.datasets()]
        dataset = dataset or (names[0] if names else "")
        found = console.operations(dataset) if dataset else []
        return page(request, "operations.html", operations=[_operation_view(op) for op in found],
                    dataset=dataset, datasets=names)

    def _operation_name(request: Request) -> str:
        p = request.path_params
        return f"{console.location_name}/datasets/{p['dataset']}/operations/{p['operation']}"

    def operation(request: Request) -> Response:
        op = console.operation(_operation_name(request))
        return page(request, "operation.html", op=_operation_view(op), log=_log(op), started=started.get(op["name"]))

    def operation_progress(request: Request) -> Response:
        op = console.operation(_operation_name(request))
        return page(request, "operation_progress.html", op=_operation_view(op), log=_log(op),
                    started=started.get(op["name"]))

    def _log(op: dict[str, Any]) -> list[dict[str, Any]]:
        view = _operation_view(op)
        return console.operation_log(op) if view["done"] and (view["failure"] or view["error"]) else []

    def objects(request: Request) -> Response:
        prefix = request.query_params.get("prefix", "")
        return page(request, "objects.html", prefix=prefix, objects=console.objects(prefix) if prefix else [])

    def object_image(request: Request) -> Response:
        image = console.image_object(request.query_params.get("uri", ""))
        if image.refused:
            return _placeholder(image.refused)
        return Response(image.content, media_type=image.content_type, headers={"Cache-Control": "private, max-age=300"})

    def dead_letters(request: Request) -> Response:
        return page(request, "dead_letters.html", letters=console.dead_letters(),
                    requeued=request.query_params.get("requeued", ""))

    async def requeue(request: Request) -> Response:
        action = await blocking(console.requeue, (await form(request)).get("id", ""))
        return RedirectResponse("/dead-letters?" + urlencode({"requeued": action}), 303)

    def query(request: Request) -> Response:
        examples = console.example_queries()
        sql = request.query_params.get("sql") or ""
        columns: list[str] = []
        rows: list[tuple[Any, ...]] = []
        error = ""
        if sql:
            try:
                columns, rows = console.query(sql)
            except ConsoleError as exc:
                error = str(exc)
        # The store whose pages DICOMweb paths in the results link to: the one the query came from, else the pipeline's.
        store = request.query_params.get("store", "")
        if not _STORE_URL.fullmatch(store):
            store = pipeline_store_url
        return page(request, "query.html", status=400 if error else 200, sql=sql or next(iter(examples.values())),
                    ran=bool(sql), examples=examples, columns=columns, rows=rows, error=error,
                    csv_url="/query.csv?" + urlencode({"sql": sql}), store=store)

    def query_csv(request: Request) -> Response:
        columns, rows = console.query(request.query_params.get("sql", ""))
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="query.csv"'})

    def pipeline(request: Request) -> Response:
        recent = [_operation_view(op) for op in console.operations(pipeline_dataset, limit=10)] \
            if pipeline_dataset else []
        try:
            letters = console.dead_letters(limit=10) if settings.staging_bucket else []
        except ConsoleError:
            letters = []
        return page(request, "pipeline.html", components=console.components(), recent=recent, letters=letters)

    def pipeline_rate(request: Request) -> Response:
        if not settings.store:
            return HTMLResponse("<p class=muted>no pipeline store configured</p>")
        points = console.sample_rate(settings.store)
        count = int(console.store_metrics(settings.store).get("instanceCount", "0"))
        return page(request, "rate.html", chart=_chart(points), count=count,
                    now=points[-1][1] if points else 0.0, peak=max((r for _, r in points), default=0.0))

    routes = [
        Route("/", home), Route("/datasets", datasets), Route("/datasets", create_dataset, methods=["POST"]),
        Route("/datasets/{dataset}/stores", create_store, methods=["POST"]),
        Route("/datasets/{dataset}/stores/{store}", studies),
        Route("/datasets/{dataset}/stores/{store}/import", import_form),
        Route("/datasets/{dataset}/stores/{store}/import", start_import, methods=["POST"]),
        Route("/datasets/{dataset}/stores/{store}/export", export_page),
        Route("/datasets/{dataset}/stores/{store}/export", start_export, methods=["POST"]),
        Route("/datasets/{dataset}/stores/{store}/studies/{study}", series),
        Route("/datasets/{dataset}/stores/{store}/studies/{study}/thumbnail", rendered),
        Route("/datasets/{dataset}/stores/{store}/studies/{study}/series/{series}", instances),
        Route("/datasets/{dataset}/stores/{store}/studies/{study}/series/{series}/thumbnail", rendered),
        Route("/datasets/{dataset}/stores/{store}/studies/{study}/series/{series}/instances/{instance}", instance),
        Route("/datasets/{dataset}/stores/{store}/studies/{study}/series/{series}/instances/{instance}/rendered",
              rendered),
        Route("/datasets/{dataset}/operations/{operation}", operation),
        Route("/datasets/{dataset}/operations/{operation}/progress", operation_progress),
        Route("/operations", operations), Route("/objects", objects), Route("/objects/image", object_image),
        Route("/dead-letters", dead_letters), Route("/dead-letters/requeue", requeue, methods=["POST"]),
        Route("/query", query), Route("/query.csv", query_csv),
        Route("/pipeline", pipeline), Route("/pipeline/rate", pipeline_rate),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def errors(request: Request, exc: Exception) -> Response:
        if isinstance(exc, CsrfRefused):
            message, status = str(exc), 403
        elif isinstance(exc, ConsoleError):
            message, status = str(exc), 502 if "HTTP 5" in str(exc) or "cannot reach" in str(exc) else 400
        else:
            log.error("unexpected %s on %s", type(exc).__name__, _route_name(request))  # no values: may be PHI
            message, status = f"unexpected {type(exc).__name__}; the console's log has the details", 500
        if request.headers.get("HX-Request"):
            return HTMLResponse(f'<p class="error" role="alert">{_escape(message)}</p>', status)
        return page(request, "error.html", status=status, message=message)

    async def headers_and_log(request: Request, call_next: Any) -> Response:
        started_at = time.perf_counter()
        response: Response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        # Server-Timing: the browser's network panel and bench/console_pages.py read the server's share from it.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started_at) * 1000:.1f}"
        log.info("%s %s %d %.0f ms", request.method, _route_name(request), response.status_code,
                 (time.perf_counter() - started_at) * 1000)
        return response

    app = Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=headers_and_log)],
                    exception_handlers={Exception: errors, ConsoleError: errors, CsrfRefused: errors})
    app.state.console = console
    return app


class CsrfRefused(Exception):
    """A state-changing request without this console's token, or from another site's page."""


_SECURITY_HEADERS = {
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
                               " script-src 'self'",
}


def _csrf_refusal(request: Request, sent: str, token: str) -> str:
    """Why a state-changing request is refused (empty: allowed)."""
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        return f"refused: a page of another site ({origin}) tried to change something here"
    if not sent or not hmac.compare_digest(sent, token):
        return "refused: the form's security token is missing or stale; reload the page and submit it again"
    return ""


def _route_name(request: Request) -> str:
    endpoint = request.scope.get("endpoint")
    return getattr(endpoint, "__name__", "?")
def _cell(value: Any) -> str:
    """A query result value as text: RECORD and REPEATED columns as JSON, NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _placeholder(reason: str) -> Response:
    return Response(_PLACEHOLDER, media_type="image/svg+xml",
                    headers={"X-Thumbnail": "placeholder", "X-Thumbnail-Reason": reason.encode("ascii", "replace")
                             .decode()[:200], "Cache-Control": "no-store"})


def _int(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default


def _offset(text: str | None) -> int:
    return max(0, _int(text, 0))


def _pager(found: Any, search: dict[str, str]) -> dict[str, str]:
    def link(offset: int) -> str:
        return "?" + urlencode({**{k: v for k, v in search.items() if v}, "offset": offset})

    return {"previous": link(max(0, found.offset - found.limit)) if found.offset else "",
            "next": link(found.offset + found.limit) if found.has_more else "",
            "range": f"{found.offset + 1}–{found.offset + len(found.items)}" if found.items else "none"}


def _store_url(store: str) -> str:
    """projects/P/locations/L/datasets/D/dicomStores/S → its page here."""
    parts = store.split("/")
    return f"/datasets/{parts[5]}/stores/{parts[7]}"


def _operation_url(name: str) -> str:
    """projects/P/locations/L/datasets/D/operations/ID → its page here ('' for anything else)."""
    parts = str(name).split("/")
    return f"/datasets/{parts[5]}/operations/{parts[7]}" if len(parts) == 8 and parts[6] == "operations" else ""


def _operation_view(op: dict[str, Any]) -> dict[str, Any]:
    metadata = op.get("metadata", {})
    counter = metadata.get("counter", {})
    success, failure, pending = (int(counter.get(k, 0)) for k in ("success", "failure", "pending"))
    total = success + failure + pending
    done = bool(op.get("done"))
    error = op.get("error", {}).get("message", "") if isinstance(op.get("error"), dict) else ""
    state = ("failed" if error or failure else "succeeded") if done else "running"
    method = str(metadata.get("apiMethodName", "")).rsplit(".", 1)[-1]
    return {"name": op.get("name", ""), "id": op.get("name", "").rsplit("/", 1)[-1], "url": _operation_url(
        op.get("name", "")), "method": method, "done": done, "state": state, "success": success,
            "failure": failure, "pending": pending, "total": total, "error": error,
            "percent": 100 if done else (round(100 * (success + failure) / total) if total else 0),
            "created": metadata.get("createTime", ""), "ended": metadata.get("endTime", ""),
            "logs_url": metadata.get("logsUrl", "")}


def _chart(points: list[tuple[float, float]], width: int = 600, height: int = 160) -> dict[str, Any]:
    """An SVG polyline of instances per second over the last minute (server-side: no chart library)."""
    if not points:
        return {"points": "", "width": width, "height": height, "top": 10}
    top = max(10.0, max(r for _, r in points) * 1.15)  # at least 0-10/s: a quiet store draws a flat line
    span = max(60.0, points[-1][0])
    coords = " ".join(f"{width * t / span:.1f},{height - height * r / top:.1f}" for t, r in points)
    return {"points": coords, "width": width, "height": height, "top": round(top)}
