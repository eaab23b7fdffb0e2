"""A progress bar fed by a long-running operation's counters (tqdm), drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
from typing import Any, TextIO


def counters(operation: dict[str, Any]) -> dict[str, int]:
    """metadata.counter as ints (the API sends int64 counters as strings and omits zeros)."""
    counter = operation.get("metadata", {}).get("counter", {})
    return {key: int(counter.get(key, 0)) for key in ("success", "failure", "pending")}


class OperationProgress:
    """`with OperationProgress(name, "file") as bar: bar.update(operation)` — a no-op when not on a TTY."""

    def __init__(self, name: str, unit: str = "item", stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = name.rsplit("/", 1)[-1]
        self.unit = unit
        self.bar: Any = None

    def __enter__(self) -> OperationProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, operation: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm  # only interactive runs pay for the import

        c = counters(operation)
        total = c["success"] + c["failure"] + c["pending"]
        if self.bar is None:
            self.bar = tqdm(total=total or None, desc=f"operation {self.label}", unit=self.unit, file=self.stream,
                            dynamic_ncols=True, leave=True)
        if total and self.bar.total != total:  # the import learns the file count only after listing the bucket
            self.bar.total = total
        self.bar.n = c["success"] + c["failure"]
        self.bar.set_postfix_str(f"{c['failure']} failed", refresh=False)
        self.bar.refresh()
