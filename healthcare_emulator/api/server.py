"""HTTP server and lifecycle: stdlib ThreadingHTTPServer in a background thread, port 0 friendly."""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote

from ..app import Emulator
from ..errors import InvalidArgument, PayloadTooLarge
from .http import Request, Response, json_response
from .routes import handle

logger = logging.getLogger(__name__)

BANNER = (
    "This is the dicom-pipeline Cloud Healthcare API (DICOM) emulator. Implementation may be incomplete"
    " or differ from the real service; see healthcare_emulator/README.md for the fidelity table."
)
MAX_BODY = 4 * 1024**3  # refuse bodies larger than this outright
_PORT_SUFFIX = re.compile(r":\d+$")
_MAX_HEADER_LINE, _MAX_HEADERS = 65536, 100  # as http.client (_MAXLINE, _MAXHEADERS)
_ONE_WRITE = 256 * 1024  # responses up to this size go out with their head in one write


class _Headers:
    """A request's header fields as parse_request needs them: get() ignores case and answers the first value
    of a repeated field, items() lists every field in order, as the email.message object they replace."""

    __slots__ = ("_fields", "_first")

    def __init__(self, fields: list[tuple[str, str]]):
        self._fields = fields
        self._first: dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def __getitem__(self, name: str) -> str | None:
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)


def _parse_header_lines(lines: list[bytes]) -> _Headers:
    """Split `Name: value` lines (Latin-1, as http.client reads them); obsolete folded lines continue the last
    value; a line without a colon is skipped."""
    fields: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        if not line:
            continue
        if line[0] in " \t" and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if colon:
            fields.append((name.strip(), value.strip(" \t")))
    return _Headers(fields)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def parse_request(self) -> bool:
        """The stdlib's parse_request with the same checks and errors, but header fields are split here:
        http.server hands them to the email package's parser, which was a fifth of a small request's CPU."""
        self.command = None  # type: ignore[assignment]  # set in case of an error on the first line
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")  # type: ignore[attr-defined]
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                parts = base_version_number.split(".")
                if len(parts) != 2 or not all(p.isdigit() and len(p) <= 10 for p in parts):
                    raise ValueError
                version_number = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1):
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                                f"Invalid HTTP version ({base_version_number})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")  # reduce to a single /, as the stdlib does
        lines: list[bytes] = []
        while True:  # the stdlib's limits on line length and header count, without its private reader
            line = self.rfile.readline(_MAX_HEADER_LINE + 1)
            if len(line) > _MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", "header line")
                return False
            lines.append(line)
            if len(lines) > _MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers",
                                f"got more than {_MAX_HEADERS} headers")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
        self.headers = _parse_header_lines(lines)  # type: ignore[assignment]
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise PayloadTooLarge(f"request body of {length} bytes is larger than the emulator's limit of {MAX_BODY}")
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        raw_path, _, query = self.path.partition("?")
        host = self.headers.get("Host") or str(self.server.server_address[0])
        if not _PORT_SUFFIX.search(host):
            # Some clients (dicomweb-client on GET) omit the port; URLs we hand back must carry it.
            host = f"{host}:{self.server.server_address[1]}"
        try:
            body = self._read_body()
        except (ValueError, PayloadTooLarge) as exc:
            error = exc if isinstance(exc, PayloadTooLarge) else InvalidArgument(f"unreadable request body: {exc}")
            self.close_connection = True  # the rest of the body is still on the socket
            self._send(json_response(error.envelope(), error.http_status))
            return
        request = Request(
            method=self.command,
            path=unquote(raw_path),
            query_string=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=f"http://{host}",
        )
        self._send(handle(self.server.emulator, request))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        if self.command != "HEAD" and len(response.body) <= _ONE_WRITE:
            # Head and a small body in one send: one system call, one packet (end_headers() flushes the
            # header buffer on its own, and the body would follow in a second write).
            self._headers_buffer.append(b"\r\n" + response.body)  # type: ignore[attr-defined]
            self.flush_headers()
            return
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        # The path only: query strings can carry QIDO matching values (patient names are PHI).
        # No path yet when the request line itself was refused (send_error logs through here).
        path = getattr(self, "path", "").partition("?")[0]
        logger.debug("%s %s -> %s", self.command, path, args[1] if len(args) > 1 else "")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator


class EmulatorServer:
    """The emulator on host:port (port 0 picks a free one). Use as a context manager or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, data_dir: str | Path | None = None,
                 storage_emulator_host: str | None = None, pubsub_emulator_host: str | None = None):
        self._tempdir = None
        if data_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="healthcare-emulator-")
            data_dir = self._tempdir.name
        self.data_dir = Path(data_dir)
        self._httpd = _HttpServer((host, port), _Handler, bind_and_activate=True)
        self.emulator = Emulator(self.data_dir, lambda: self.url, storage_emulator_host, pubsub_emulator_host)
        self._httpd.emulator = self.emulator
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmulatorServer:
        """Serve in a background thread; the socket is already listening, so no readiness wait is needed."""
        if self._thread is None:
            self._serving = True
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="healthcare-emulator",
                                            daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._serving = True
        self._httpd.serve_forever()

    def reset(self) -> None:
        self.emulator.reset()

    def stop(self) -> None:
        if self._serving:  # shutdown() waits for serve_forever() to return, so only call it if it ran
            self._httpd.shutdown()
            self._serving = False
        self._httpd.server_close()
        self.emulator.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def create_server(host: str = "127.0.0.1", port: int = 0, data_dir: str | Path | None = None,
                  storage_emulator_host: str | None = None, pubsub_emulator_host: str | None = None
                  ) -> EmulatorServer:
    """The emulator, not yet serving; the hosts default to $STORAGE_EMULATOR_HOST and $PUBSUB_EMULATOR_HOST."""
    return EmulatorServer(host, port, data_dir, storage_emulator_host, pubsub_emulator_host)
