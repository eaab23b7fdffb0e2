"""PERMISSION_DENIED → the IAM roles each command needs. The emulator does no IAM, so the edge fake here is a
small HTTP server that denies everything (or finishes every operation with PERMISSION_DENIED), talked to by the
real clients."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli import main
from cli.permissions import is_permission_denied, permission_message

STORE = "projects/p/locations/l/datasets/d/dicomStores/s"
DENIED = {"error": {"code": 403, "message": "Permission 'healthcare.dicomStores.import' denied on resource",
                    "status": "PERMISSION_DENIED"}}
OPERATION = {"name": "projects/p/locations/l/datasets/d/operations/7", "done": True,
             "metadata": {"counter": {"failure": "1"}},
             "error": {"code": 7, "message": "the service agent cannot read gs://b/x.dcm"}}


@pytest.fixture
def denying_server() -> Iterator[dict[str, str]]:
    """{"url": ..., "mode": "deny" | "operation"}: set mode to choose what every request gets."""
    config = {"mode": "deny"}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, body = (403, DENIED) if config["mode"] == "deny" else (200, OPERATION)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # http.server's method names

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield config
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("argv", "roles"), [
    (["import", STORE, "gs://b/in/*.dcm"], ["roles/healthcare.dicomEditor", "roles/storage.objectViewer"]),
    (["export", "bq", STORE, "bq://p.d.t"], ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"]),
    (["export", "gcs", STORE, "gs://b/out"], ["roles/storage.objectAdmin"]),
    (["storage-class", STORE, "ARCHIVE", "--whole-store"], ["roles/healthcare.dicomEditor"]),
    (["operations", "list", "projects/p/locations/l/datasets/d"], ["roles/healthcare.datasetViewer"]),
    (["operations", "describe", "projects/p/locations/l/datasets/d/operations/1"],
     ["roles/healthcare.datasetViewer"]),
])
def test_a_403_names_the_roles_and_exits_2(denying_server, argv, roles, capsys) -> None:
    assert main(["--endpoint", denying_server["url"], *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "permission denied" in err and "healthcare.dicomStores.import' denied" in err
    for role in roles:
        assert role in err
    if argv[0] in ("import", "export"):
        assert "gcp-sa-healthcare.iam.gserviceaccount.com" in err  # the service agent, not the caller


def test_an_operation_denied_to_the_service_agent_names_its_role(denying_server, capsys) -> None:
    denying_server["mode"] = "operation"
    assert main(["--endpoint", denying_server["url"], "import", STORE, "gs://b/x.dcm", "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["code"] == 7
    assert "roles/storage.objectViewer on the source bucket" in out["fix"]


def test_bigquery_forbidden_maps_to_the_query_roles(denying_server) -> None:
    """The real google-cloud-bigquery client's Forbidden, as the query command would see it."""
    from google.api_core.exceptions import Forbidden
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(project="p", credentials=AnonymousCredentials(),
                             client_options={"api_endpoint": denying_server["url"]})
    with pytest.raises(Forbidden) as caught:
        client.query("SELECT 1").result()
    assert is_permission_denied(caught.value)
    message = permission_message("query", caught.value)
    assert "roles/bigquery.jobUser" in message and "roles/bigquery.dataViewer" in message


def test_other_errors_are_not_permission_errors() -> None:
    assert not is_permission_denied(ValueError("bad"))
    assert "grant your account" in permission_message("no-such-command", RuntimeError("x"))


def test_every_command_that_calls_google_apis_has_its_own_hint() -> None:
    """A command added without a [[cli]] row in terraform/iam_table.toml would answer a 403 with a generic hint."""
    import argparse

    from cli.main import build_parser
    from cli.permissions import GENERIC_HINT, role_hint

    def iam_names(parser: argparse.ArgumentParser) -> set[str]:
        names = {parser.get_default("iam")} - {None}
        for action in parser._actions:  # argparse keeps its subparsers only here
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    names |= iam_names(child)
        return names

    local_only = {"console", "local-stack"}  # they serve or start local processes; a 403 comes from what they call
    commands = iam_names(build_parser()) - local_only
    assert "reconcile" in commands and "dead-letters-requeue" in commands
    assert [name for name in sorted(commands) if role_hint(name) == GENERIC_HINT] == []
