"""Framework-free request and response values shared by the server, the routes and the handlers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import json5

from ..errors import InvalidArgument


@dataclass
class Request:
    method: str
    path: str  # decoded, without the query string
    query_string: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    base_url: str  # scheme://host:port the client used, for URLs we hand back
    version: str = "v1"  # API version from the path: v1 or v1beta1

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> dict[str, Any]:
        """The JSON object body; an empty body is {}. Malformed JSON is a 400 that says where.

        Google's front end takes more than strict JSON: its own documentation sends single-quoted bodies
        (`--data "{ 'gcsDestination': {...} }"`). Strict JSON is parsed by the standard library; anything
        else by json5, whose grammar (single quotes, unquoted keys, trailing commas, comments) covers that.
        """
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"Invalid JSON payload received. {exc}") from None
        except json.JSONDecodeError:
            try:
                value = json5.loads(self.body.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidArgument(f"Invalid JSON payload received. {exc}") from None
            except ValueError as exc:
                # json5 says "<string>:LINE WHAT at column COLUMN"
                found = re.fullmatch(r"<string>:(\d+) (.*) at column (\d+)", str(exc))
                where = f"{found[2]} at line {found[1]}, column {found[3]}" if found else str(exc)
                raise InvalidArgument(f"Invalid JSON payload received. {where}") from None
        if not isinstance(value, dict):
            raise InvalidArgument(
                f"Invalid JSON payload received. Expected an object, got {type(value).__name__}"
            )
        return value


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False).encode("utf-8"))
