"""Filter files (`filterConfig.resourcePathsGcsUri`): which studies, series and instances an operation touches.

One resource path per line, `/studies/S[/series/SE[/instances/I]]`, lines ending in `\\n` or `\\r\\n`;
blank lines are skipped. A malformed line is an error that names its line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InvalidArgument
from ..names import is_valid_uid

_LINE = re.compile(r"/studies/([^/]+)(?:/series/([^/]+)(?:/instances/([^/]+))?)?")


@dataclass(frozen=True)
class ResourceFilter:
    studies: frozenset[str] = frozenset()
    series: frozenset[tuple[str, str]] = frozenset()
    instances: frozenset[tuple[str, str, str]] = frozenset()
    lines: int = field(default=0, compare=False)

    def selects(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        return (study_uid in self.studies or (study_uid, series_uid) in self.series
                or (study_uid, series_uid, sop_uid) in self.instances)

    @property
    def study_uids(self) -> set[str]:
        """Every study any line names, to narrow index lookups before `selects`."""
        return set(self.studies) | {s for s, _ in self.series} | {s for s, _, _ in self.instances}


def parse_filter(text: str, source: str) -> ResourceFilter:
    studies: set[str] = set()
    series: set[tuple[str, str]] = set()
    instances: set[tuple[str, str, str]] = set()
    count = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip()
        if not line:
            continue
        match = _LINE.fullmatch(line)
        uids = [uid for uid in match.groups() if uid is not None] if match else []
        if not match or not all(is_valid_uid(uid) for uid in uids):
            raise InvalidArgument(
                f"filter file {source} line {number}: {line[:200]!r} is not a resource path of the form"
                " /studies/STUDY_UID[/series/SERIES_UID[/instances/INSTANCE_UID]] with valid UIDs"
            )
        count += 1
        if len(uids) == 1:
            studies.add(uids[0])
        elif len(uids) == 2:
            series.add((uids[0], uids[1]))
        else:
            instances.add((uids[0], uids[1], uids[2]))
    if count == 0:
        raise InvalidArgument(f"filter file {source} lists no resource paths")
    return ResourceFilter(frozenset(studies), frozenset(series), frozenset(instances), count)
