"""The emulator's request-handling core: storage, operations and ingest behind the route table."""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from pathlib import Path

from .errors import ApiError, Internal
from .gcs import GcsReader
from .http import Request, Response, json_response
from .ingest import Ingest
from .operations import OperationEngine
from .routes import resolve
from .storage import Storage

logger = logging.getLogger(__name__)


class Emulator:
    """Everything a handler needs; one per data directory."""

    def __init__(self, data_dir: str | os.PathLike[str], public_url: Callable[[], str],
                 storage_emulator_host: str | None = None):
        self.data_dir = Path(data_dir)
        self.storage = Storage(self.data_dir)
        self.engine = OperationEngine(self.storage, public_url)
        self.gcs = GcsReader(storage_emulator_host)
        self.ingest = Ingest(self.storage, self.gcs)
        self.public_url = public_url

    def handle(self, request: Request) -> Response:
        """Route a request; every failure becomes the Google JSON error envelope."""
        try:
            handler, params = resolve(request)
            return handler(self, request, **params)
        except ApiError as exc:
            return json_response(exc.envelope(), exc.http_status)
        except Exception as exc:  # keep serving whatever one request did
            logger.error("internal error on %s %s\n%s", request.method, request.path, traceback.format_exc())
            error = Internal(f"internal emulator error: {type(exc).__name__}")
            return json_response(error.envelope(), error.http_status)

    def reset(self) -> None:
        self.storage.reset()

    def close(self) -> None:
        self.engine.shutdown()
        self.ingest.close()
