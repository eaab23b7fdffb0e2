"""The HTTP layer on the wire: request heads as the stdlib server read them (the emulator splits header fields
itself), keep-alive and close, limits, and responses whose head and body go out in one write."""

from __future__ import annotations

import socket

import pytest

from healthcare_emulator.api.server import EmulatorServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    with EmulatorServer() as emulator:
        yield emulator


def exchange(server: EmulatorServer, raw: bytes, responses: int = 1) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Send raw bytes, read `responses` responses (status line, lower-case headers, body)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(raw)
        reader = sock.makefile("rb")
        answers = []
        for _ in range(responses):
            status = reader.readline().rstrip(b"\r\n")
            headers: dict[str, str] = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            answers.append((status, headers, reader.read(int(headers.get("content-length", 0)))))
        return answers


def test_keep_alive_serves_requests_in_turn_and_close_ends(server):
    head = f"GET /_emulator/health HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
    answers = exchange(server, (head + "\r\n" + head + "Connection: close\r\n\r\n").encode(), responses=2)
    assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2
    assert all(a[1]["content-length"] == str(len(a[2])) and a[2] for a in answers)


def test_http_1_0_closes_after_one_response(server):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /_emulator/health HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # the server closes: recv returns b"" instead of blocking
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")


def test_header_names_ignore_case_and_folded_lines_continue(server):
    body = b'{"gcsSource": {}}'
    raw = (b"POST /v1/projects/p/locations/l/datasets/none/dicomStores/s:import HTTP/1.1\r\n"
           b"hOsT: example.test\r\n"
           b"content-TYPE: application/json\r\n"
           b"X-Folded: first\r\n second\r\n"
           b"CONTENT-LENGTH: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    (status, headers, answer), = exchange(server, raw)
    # The body was read by its Content-Length (any case), so the request reached the handler.
    assert status == b"HTTP/1.1 404 Not Found", answer
    assert b"dataset" in answer and headers["content-type"].startswith("application/json")


def test_too_many_headers_and_long_lines_are_431(server):
    many = "".join(f"X-{i}: v\r\n" for i in range(150))
    (status, _, _), = exchange(server, f"GET /_emulator/health HTTP/1.1\r\n{many}\r\n".encode())
    assert status.startswith(b"HTTP/1.1 431")
    (status, _, _), = exchange(server, b"GET /_emulator/health HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize(("line", "code"), [(b"GET /_emulator/health HTTP/x.y", b"400"),
                                            (b"GET /_emulator/health HTTP/2.0", b"505"),
                                            (b"GET / HTTP/1.1 extra", b"400"), (b"POST /_emulator/reset", b"400")])
def test_bad_request_lines_are_refused_as_the_stdlib_does(server, line, code):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(line + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # refused: the server answers and closes
            data += chunk
    # The stdlib answers a request line it could not read with its HTML error page (no status line when it
    # could not tell the HTTP version); the code is in the page either way.
    assert f"Error code: {code.decode()}".encode() in data, data


def test_expect_100_continue(server):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/projects/p/locations/l/datasets?datasetId=wire-expect HTTP/1.1\r\n"
                     b"Host: h:1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"{}")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_large_response_body_arrives_whole(server):
    """Larger than the one-write limit: the head and the body go out in two writes, as before."""
    import requests

    from dicom_samples import synthetic_instance
    from healthcare_emulator.api import server as module

    instance = synthetic_instance(rows=512, columns=512)
    assert len(instance.data) > module._ONE_WRITE
    base = f"{server.url}/v1/projects/p/locations/l/datasets"
    requests.post(f"{base}?datasetId=wire-big", json={}, timeout=10).raise_for_status()
    requests.post(f"{base}/wire-big/dicomStores?dicomStoreId=s", json={}, timeout=10).raise_for_status()
    web = f"{base}/wire-big/dicomStores/s/dicomWeb"
    requests.post(f"{web}/studies", data=instance.data, headers={"Content-Type": "application/dicom"},
                  timeout=30).raise_for_status()
    response = requests.get(f"{web}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/"
                            f"{instance.sop_uid}", headers={"Accept": "application/dicom; transfer-syntax=*"},
                            timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.content == instance.data
