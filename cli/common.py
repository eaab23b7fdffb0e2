"""What every command shares: exit codes, the usage error, the endpoint choice and the two output formats."""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import os
from collections.abc import Sequence
from typing import Any

OK, FAILED, USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem the operator fixes by changing the command or its configuration (exit 2)."""


LOCAL_EXTRA_FIX = ("install the local extras: pip install 'dicom-pipeline[local]' (from a checkout:"
                   " pip install -e '.[local]', or make setup)")


def endpoint(args: argparse.Namespace) -> str | None:
    """The local stack's Healthcare API endpoint, or None for Google Cloud with default credentials."""
    return args.endpoint or os.environ.get("HEALTHCARE_API_ENDPOINT") or None


def _jsonable(value: Any) -> Any:
    # BigQuery and DuckDB rows carry dates, times, decimals and bytes, which json cannot encode by itself.
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=_jsonable))


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list | dict):
        return json.dumps(value, default=_jsonable)
    return str(value)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded to their widest cell, a rule under the header; NULL for missing values."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
