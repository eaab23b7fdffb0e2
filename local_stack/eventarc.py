"""The storage-event adapter: a Pub/Sub push of a fake-gcs-server notification → a binary-mode CloudEvent.

Eventarc delivers Cloud Storage events to a gen2 function as `google.cloud.storage.object.v1.finalized`
CloudEvents whose data is the object resource. fake-gcs-server can only publish to Pub/Sub, so this tiny
server receives the emulator's push and re-POSTs it the way Eventarc would. The function's status code is
passed back, so a 500 from the function makes the Pub/Sub emulator redeliver (as Eventarc retries).

    python -m local_stack.eventarc --port 8095 --target http://127.0.0.1:8096/
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

EVENT_TYPES = {
    "OBJECT_FINALIZE": "google.cloud.storage.object.v1.finalized",
    "OBJECT_DELETE": "google.cloud.storage.object.v1.deleted",
    "OBJECT_METADATA_UPDATE": "google.cloud.storage.object.v1.metadataUpdated",
}


def to_cloud_event(push_body: dict[str, Any]) -> CloudEvent | None:
    """The CloudEvent Eventarc would send for this push body, or None for an event type it has no mapping for."""
    message = push_body["message"]
    attributes = message.get("attributes") or {}
    event_type = EVENT_TYPES.get(attributes.get("eventType", ""))
    if event_type is None:
        return None
    data = json.loads(base64.b64decode(message.get("data", "")) or b"{}")
    bucket = attributes.get("bucketId") or data.get("bucket", "")
    name = attributes.get("objectId") or data.get("name", "")
    return CloudEvent({
        "type": event_type,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "subject": f"objects/{name}",
        # messageId is stable across Pub/Sub redeliveries, as an Eventarc event id is across retries.
        "id": message.get("messageId") or message.get("message_id"),
        "time": message.get("publishTime") or message.get("publish_time"),
        "datacontenttype": "application/json",
    }, data)


class _Handler(BaseHTTPRequestHandler):
    server: _AdapterServer

    def do_GET(self) -> None:
        self._answer(200)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = to_cloud_event(json.loads(self.rfile.read(length)))
        except (ValueError, KeyError) as exc:
            # A malformed push will not get better on redelivery: acknowledge it, say why in the log.
            self.log_message("dropped malformed push: %s", exc)
            self._answer(204)
            return
        if event is None:
            self._answer(204)
            return
        headers, body = to_binary(event)
        try:
            response = self.server.session.post(self.server.target, headers=headers, data=body, timeout=600)
            status = response.status_code
        except requests.RequestException as exc:
            self.log_message("target unreachable: %s", exc)
            status = 503
        self._answer(204 if 200 <= status < 300 else status)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"eventarc-adapter: {format % args}\n")


class _AdapterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], target: str):
        super().__init__(address, _Handler)
        self.target = target
        self.session = requests.Session()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.eventarc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="URL of the import function")
    args = parser.parse_args(argv)
    server = _AdapterServer(("127.0.0.1", args.port), args.target)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
