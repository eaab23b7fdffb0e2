"""terraform/*.tf parsed by python-hcl2, merged by top-level block kind (shared by the offline proofs)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"


def parse_files(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    import hcl2

    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        with path.open() as f:
            for key, value in hcl2.load(f, serialization_options=options).items():
                merged.setdefault(key, []).extend(value)
    return merged


@cache
def parsed_configuration() -> dict[str, list[dict[str, Any]]]:
    return parse_files(sorted(TF.glob("*.tf")))
