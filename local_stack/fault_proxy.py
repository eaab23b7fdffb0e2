"""A loopback HTTP proxy that injects faults in front of an emulator: what a flaky network and an overloaded API
do to a client, made to happen on purpose.

Each rule matches requests by method and a substring of the path, then, for a share of them (`rate`, from a
seeded random source) or for the first `times` of them:

- `before`: answer this status (503, 429) without forwarding: the API never saw the request;
- `latency`: wait this many seconds, then forward;
- `after`: forward, let the API act, then lose its answer: "drop" closes the connection without a response,
  a status (503) answers that instead, "timeout" holds the connection open until the client gives up.

`counts` says how often each rule fired, so a test can check that its fault really happened.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Rule:
    name: str
    method: str = ""  # "" matches every method
    path_contains: str = ""
    before: int | None = None
    latency: float = 0.0
    after: int | str | None = None  # "drop", "timeout" or an HTTP status
    rate: float = 1.0
    times: int | None = None  # at most this many times (None: no limit)


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:PORT
    rules: list[Rule] = field(default_factory=list)
    seed: int = 15
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 - fault injection, not security
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._released = threading.Event()  # ends "timeout" holds when the proxy stops
        self.url = ""

    def start(self) -> Self:
        proxy = self
        upstream = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = proxy._choose(self.command, self.path)
                if rule is not None and rule.before is not None:
                    return self._answer(rule.before, b'{"error": {"code": %d, "message": "injected by the fault'
                                        b' proxy before forwarding"}}' % rule.before)
                if rule is not None and rule.latency:
                    time.sleep(rule.latency)
                connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                finally:
                    connection.close()
                if rule is not None and rule.after == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)  # the API acted; its answer never arrives
                    return None
                if rule is not None and rule.after == "timeout":
                    proxy._released.wait(300)
                    self.close_connection = True
                    return None
                if rule is not None and isinstance(rule.after, int):
                    return self._answer(rule.after, b'{"error": {"code": %d, "message": "injected by the fault'
                                        b' proxy after forwarding"}}' % rule.after)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def _choose(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if (rule.method and rule.method != method) or rule.path_contains not in path:
                    continue
                if rule.times is not None and self.counts.get(rule.name, 0) >= rule.times:
                    continue
                if self._random.random() >= rule.rate:
                    continue
                self.counts[rule.name] = self.counts.get(rule.name, 0) + 1
                return rule
        return None

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
