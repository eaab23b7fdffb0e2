"""multipart/related bodies (RFC 2387 / RFC 2046) for DICOMweb: media-type parsing, decoding and encoding.

Knows no HTTP framework; errors are MultipartError (a ValueError) with a message that says what is wrong,
which the DICOMweb handler turns into a 400.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field


class MultipartError(ValueError):
    """A malformed multipart body or media type; the message names the problem."""


@dataclass(frozen=True)
class MediaType:
    """A parsed media type: lower-case `type/subtype` plus parameters (names lower-case, values unquoted)."""

    mime: str
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        rendered = self.mime
        for key, value in self.params.items():
            rendered += f'; {key}="{value}"' if _needs_quotes(value) else f"; {key}={value}"
        return rendered


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


_TSPECIALS = set('()<>@,;:\\"/[]?=')


def _needs_quotes(value: str) -> bool:
    return not value or any(c in _TSPECIALS or c.isspace() for c in value)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on `separator` except inside double quotes (a quoted boundary may contain ';' or ',')."""
    pieces, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == separator and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise MultipartError(f"unterminated quoted string in media type {text!r}")
    pieces.append("".join(current))
    return pieces


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out, escaped = [], False
        for char in inner:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def parse_media_type(text: str) -> MediaType:
    """Parse `type/subtype; name=value; ...` (RFC 9110 8.3.1)."""
    pieces = _split_outside_quotes(text, ";")
    mime = pieces[0].strip().lower()
    if mime.count("/") != 1 or not all(mime.split("/")):
        raise MultipartError(f"invalid media type {text.strip()!r}: expected type/subtype")
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        if not piece.strip():
            continue
        name, sep, value = piece.partition("=")
        if not sep or not name.strip():
            raise MultipartError(f"invalid parameter {piece.strip()!r} in media type {text.strip()!r}")
        params[name.strip().lower()] = _unquote(value)
    return MediaType(mime, params)


def parse_accept(text: str | None) -> list[MediaType]:
    """The media ranges of an Accept header, in order; an absent or empty header accepts anything."""
    if not text or not text.strip():
        return [MediaType("*/*")]
    ranges = []
    for item in _split_outside_quotes(text, ","):
        if item.strip():
            media = parse_media_type(item)
            if media.params.get("q", "1").strip() not in ("0", "0.0", "0.00", "0.000"):
                ranges.append(media)
    return ranges


def decode(body: bytes, boundary: str) -> list[Part]:
    """Split a multipart body into its parts.

    The first delimiter may open the body or follow a preamble; the close delimiter (`--boundary--`) is
    required, so a truncated upload is an error rather than a silently shorter list of instances.
    """
    if not boundary:
        raise MultipartError("the multipart boundary is empty")
    if len(boundary) > 70:
        raise MultipartError("the multipart boundary is longer than 70 characters (RFC 2046)")
    marker = b"--" + boundary.encode("latin_1")
    delimiter = b"\r\n" + marker
    data = b"\r\n" + body  # so a delimiter at the very start is found like every other one
    position = data.find(delimiter)
    if position < 0:
        raise MultipartError(f"the body contains no multipart boundary {boundary!r}")
    parts: list[Part] = []
    position += len(delimiter)
    while True:
        if data[position:position + 2] == b"--":
            return parts
        line_end = data.find(b"\r\n", position)
        if line_end < 0 or data[position:line_end].strip(b" \t"):
            raise MultipartError("a multipart boundary line is not followed by CRLF")
        start = line_end + 2
        end = data.find(delimiter, start)
        if end < 0:
            raise MultipartError(
                f"the multipart body is truncated: part {len(parts) + 1} has no closing boundary"
                f" (expected '--{boundary}--' at the end)"
            )
        parts.append(_parse_part(data[start:end], len(parts) + 1))
        position = end + len(delimiter)


def _parse_part(raw: bytes, number: int) -> Part:
    if raw.startswith(b"\r\n"):  # no headers at all
        return Part({}, raw[2:])
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        raise MultipartError(f"multipart part {number} has no blank line between its headers and its content")
    headers: dict[str, str] = {}
    for line in raw[:head_end].decode("latin_1").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MultipartError(f"multipart part {number} has a malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return Part(headers, raw[head_end + 4:])


def new_boundary() -> str:
    return uuid.uuid4().hex


def encode(parts: Iterable[tuple[str, bytes]], boundary: str) -> bytes:
    """A multipart body of (content type, content) parts, closed with `--boundary--`."""
    marker = boundary.encode("latin_1")
    chunks: list[bytes] = []
    for content_type, content in parts:
        if marker in content:  # a random boundary inside the content would split the part
            raise MultipartError("boundary occurs inside a part; choose another boundary")
        chunks += [b"--", marker, b"\r\nContent-Type: ", content_type.encode("latin_1"), b"\r\n\r\n", content,
                   b"\r\n"]
    chunks += [b"--", marker, b"--\r\n"]
    return b"".join(chunks)


def encode_related(parts: list[tuple[str, bytes]], root_type: str) -> tuple[bytes, str]:
    """Encode parts and return (body, Content-Type header) for `multipart/related; type=root_type`."""
    while True:
        boundary = new_boundary()
        try:
            body = encode(parts, boundary)
        except MultipartError:
            continue
        return body, f'multipart/related; type="{root_type}"; boundary={boundary}'
