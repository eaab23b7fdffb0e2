"""Filter files (one /studies/...[/series/...[/instances/...]] line each): build from SQL, validate."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dicom_pipeline import cloud_storage
from dicom_pipeline.names import GcsUri, filter_line

from .common import FAILED, OK, UsageError, print_json
from .query import run_sql

_UID_COLUMNS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def storage_settings() -> SimpleNamespace:
    return SimpleNamespace(storage_emulator_host=os.environ.get("STORAGE_EMULATOR_HOST") or None,
                           project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)


def _blob(uri: GcsUri) -> Any:
    """The object through google-cloud-storage, for reads and writes alike: it honours the proxy settings an
    operator's machine may need (the functions' lean calls in dicom_pipeline.cloud_storage do not read them)."""
    settings = storage_settings()
    return cloud_storage.client(settings.storage_emulator_host, settings.project).bucket(uri.bucket).blob(uri.name)


def lines_from_rows(columns: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    """One line per distinct row, in row order: from UID columns (the deepest level selected: study, series or
    instance), or from a single column of resource paths such as the seed's
    `SELECT CONCAT('/studies/', StudyInstanceUID, '/series/', …)`."""
    if "StudyInstanceUID" in columns:
        lines = _lines_from_uids(columns, rows)
    elif len(columns) == 1:
        lines = _lines_from_paths(columns[0], rows)
    else:
        raise UsageError("the query must select StudyInstanceUID (and optionally SeriesInstanceUID,"
                         " SOPInstanceUID), or one column of /studies/… paths; e.g. SELECT StudyInstanceUID,"
                         " SeriesInstanceUID, SOPInstanceUID FROM ...")
    return list(dict.fromkeys(lines))  # keeps the order, drops duplicates


def _lines_from_uids(columns: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    depth = 1
    while depth < 3 and _UID_COLUMNS[depth] in columns:
        depth += 1
    indexes = [columns.index(name) for name in _UID_COLUMNS[:depth]]
    lines = []
    for row in rows:
        values = [row[i] for i in indexes]
        if any(v is None or v == "" for v in values):
            continue
        parts = zip(("studies", "series", "instances"), values, strict=False)
        lines.append("/" + "/".join(f"{key}/{value}" for key, value in parts))
    return lines


def _lines_from_paths(column: str, rows: list[tuple[Any, ...]]) -> list[str]:
    """Each value must be a resource path; the first that is not stops the build, naming its row."""
    lines = []
    for number, (value,) in enumerate(rows, start=1):
        if value is None or value == "":
            continue  # CONCAT with a NULL UID gives NULL: that row names nothing, as in the UID form
        try:
            lines.append(filter_line(str(value)))
        except ValueError as exc:
            raise UsageError(f"row {number} of column {column}: {exc}; a single-column query must return"
                             " /studies/S[/series/SE[/instances/I]] paths, or select StudyInstanceUID (and"
                             " optionally SeriesInstanceUID, SOPInstanceUID)") from None
    return lines


def cmd_build(args: argparse.Namespace) -> int:
    columns, rows = run_sql(args, args.sql)
    lines = lines_from_rows(columns, rows)
    text = "".join(f"{line}\n" for line in lines)
    if args.output.startswith("gs://"):
        target = GcsUri.from_string(args.output)
        _blob(target).upload_from_string(text, content_type="text/plain")
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    if args.format == "json":
        print_json({"output": args.output, "lines": len(lines)})
    else:
        print(f"wrote {len(lines)} lines to {args.output}")
    return OK


def cmd_validate(args: argparse.Namespace) -> int:
    if args.file.startswith("gs://"):
        source = GcsUri.from_string(args.file)
        try:
            text = _blob(source).download_as_bytes().decode("utf-8")
        except Exception as exc:
            from .permissions import is_permission_denied

            if is_permission_denied(exc):
                raise  # main names the role
            raise UsageError(f"cannot read {args.file}: {exc}; check the name") from exc
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {args.file}: {exc}") from exc
    bad: list[dict[str, Any]] = []
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        count += 1
        try:
            filter_line(line)
        except ValueError as exc:
            bad.append({"line": number, "text": line, "reason": str(exc)})
    if args.format == "json":
        print_json({"file": args.file, "lines": count, "bad": bad})
    else:
        for entry in bad:
            print(f"{args.file}:{entry['line']}: {entry['reason']}")
        print(f"{count} lines, {len(bad)} bad")
    return FAILED if bad else OK
