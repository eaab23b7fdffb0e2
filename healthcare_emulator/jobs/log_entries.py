"""The operation logs as Cloud Logging sees them: LogEntry values and the subset of the query language the
pipeline uses (`entries:list`).

The real API writes each failed file of an import as a LogEntry whose `jsonPayload` is an
`ImportDicomLogEntry {source, error}` (exports: `ExportDicomLogEntry {resourceName, error}`), with
`operation {id, producer}` and a `healthcare_dicom_store` resource. The emulator keeps its operation logs as
JSON lines (metadata.logsUrl serves them as they are); this module renders them in that shape and filters
them with comparisons (`=`, `!=`, `:`, `<`, `<=`, `>`, `>=`), `AND`, `OR`, `NOT`, `-` and parentheses.
OR binds tighter than AND, as in Cloud Logging; juxtaposed terms are ANDed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument

RESOURCE_TYPE = "healthcare_dicom_store"
_PAYLOAD_TYPE = "type.googleapis.com/google.cloud.healthcare.logging.{kind}DicomLogEntry"
_SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
_INVALID_ARGUMENT = 3


def _kind(method: str) -> str:
    """ImportDicomData → Import, ExportDicomData → Export (the log entry types that exist for DICOM)."""
    last = method.rsplit(".", 1)[-1]
    return "Export" if last.startswith("Export") else "Import"


def log_entry(local: dict[str, Any], method: str, line: int) -> dict[str, Any]:
    """One line of an operation log as a Cloud Logging LogEntry."""
    operation = str(local.get("operation", ""))
    project, location, dataset = _name_parts(operation, ("projects", "locations", "datasets"))
    store = str(local.get("store") or "")
    kind = _kind(method)
    payload: dict[str, Any] = {"@type": _PAYLOAD_TYPE.format(kind=kind),
                               "error": {"code": int(local.get("code", _INVALID_ARGUMENT)),
                                         "message": str(local.get("message", ""))}}
    if local.get("resource"):
        payload["source" if kind == "Import" else "resourceName"] = str(local["resource"])
    operation_id = operation.rsplit("/", 1)[-1]
    return {
        "logName": f"projects/{project}/logs/healthcare.googleapis.com%2F{kind.lower()}_dicom",
        "resource": {"type": RESOURCE_TYPE, "labels": {
            "project_id": project, "location": location, "dataset_id": dataset,
            "dicom_store_id": store.rsplit("/", 1)[-1] if store else ""}},
        "timestamp": local.get("timestamp", ""), "receiveTimestamp": local.get("timestamp", ""),
        "severity": str(local.get("severity", "DEFAULT")),
        "insertId": f"{operation_id}-{line}",
        "operation": {"id": operation_id, "producer": f"healthcare.googleapis.com/{kind}Dicom"},
        "jsonPayload": payload,
    }


def _name_parts(name: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    parts = name.split("/")
    return tuple(parts[parts.index(key) + 1] if key in parts[:-1] else "" for key in keys)


def in_scope(entry: dict[str, Any], resource_names: Iterable[str]) -> bool:
    """Whether a project (projects/P) or a log view of one (projects/P/locations/L/buckets/B/views/V) holds it.

    The emulator keeps one bucket per project whose entries are all healthcare_dicom_store entries, so a view
    (which the deployment restricts to that resource type) sees what its project sees."""
    project = entry["resource"]["labels"]["project_id"]
    return any(name.split("/")[1] == project for name in resource_names)


def check_resource_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(
            r"projects/[^/]+(/locations/[^/]+/buckets/[^/]+(/views/[^/]+)?)?", name):
        raise InvalidArgument(f"invalid resource name {name!r}: use projects/PROJECT or "
                              "projects/PROJECT/locations/LOCATION/buckets/BUCKET/views/VIEW")
    return name


# --- the query language (the subset the pipeline and an operator's simple queries use) ------------------------

_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>>=|<=|!=|[=:<>()])|(?P<word>[^\s"=:<>()!]+))')
Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Query:
    """A parsed filter: the test, and the operation ids every matching entry has (None: any), so that a query
    for one operation reads that operation's log and not every log."""

    test: Predicate
    operations: frozenset[str] | None = None


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    at: int = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise InvalidArgument("filter: ends too early")
        self.at += 1
        return token

    def conjunction(self) -> Query:
        terms = [self.disjunction()]
        while (token := self.peek()) is not None and token != ("op", ")"):
            if token == ("word", "AND"):
                self.take()
            terms.append(self.disjunction())
        pinned = [term.operations for term in terms if term.operations is not None]
        operations = frozenset.intersection(*pinned) if pinned else None
        return Query(lambda entry: all(term.test(entry) for term in terms), operations)

    def disjunction(self) -> Query:
        terms = [self.negation()]
        while self.peek() == ("word", "OR"):
            self.take()
            terms.append(self.negation())
        if len(terms) == 1:
            return terms[0]
        pinned = [term.operations for term in terms if term.operations is not None]
        operations = frozenset().union(*pinned) if len(pinned) == len(terms) else None
        return Query(lambda entry: any(term.test(entry) for term in terms), operations)

    def negation(self) -> Query:
        token = self.peek()
        if token == ("word", "NOT"):
            self.take()
            inner = self.negation()
            return Query(lambda entry: not inner.test(entry))
        if token is not None and token[0] == "word" and token[1].startswith("-") and len(token[1]) > 1:
            self.tokens[self.at] = ("word", token[1][1:])
            inner = self.negation()
            return Query(lambda entry: not inner.test(entry))
        if token == ("op", "("):
            self.take()
            inner = self.conjunction()
            if self.peek() != ("op", ")"):
                raise InvalidArgument("filter: missing ')'")
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> Query:
        kind, field = self.take()
        if kind != "word":
            raise InvalidArgument(f"filter: expected a field name, found {field!r}")
        kind, op = self.take()
        if kind != "op" or op in "()":
            raise InvalidArgument(f"filter: expected a comparison after {field!r} (=, !=, :, <, <=, >, >=), "
                                  "free-text search is not supported by the emulator")
        kind, raw = self.take()
        if kind == "op":
            raise InvalidArgument(f"filter: expected a value after {field} {op}")
        value = _unquote(raw) if kind == "string" else raw
        # An entry's operation.id is the operation's number; a full operation name pins the same log.
        pinned = frozenset({value.rsplit("/", 1)[-1]}) if (field, op) == ("operation.id", "=") else None
        return Query(_compare(field, op, value), pinned)


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def _field(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _compare(path: str, op: str, value: str) -> Predicate:
    def rank(text: Any) -> Any:
        if path == "severity":
            upper = str(text).upper()
            return _SEVERITIES.index(upper) if upper in _SEVERITIES else -1
        return str(text)

    def test(entry: dict[str, Any]) -> bool:
        found = _field(entry, path)
        if found is None or isinstance(found, dict | list):
            return op == "!=" and found is None
        text = str(found)
        if op == ":":
            return value.lower() in text.lower()
        if op == "=":
            return text == value if path != "severity" else rank(text) == rank(value)
        if op == "!=":
            return text != value
        left, right = rank(text), rank(value)
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]

    return test


def parse_filter(text: str) -> Query:
    """A query over LogEntry values; InvalidArgument names what the emulator does not understand."""
    if not text.strip():
        return Query(lambda entry: True)
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if not text[position:].strip():
                break
            raise InvalidArgument(f"filter: cannot read {text[position:position + 20]!r}")
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group(kind)))
        position = match.end()
    parser = _Parser(tokens)
    query = parser.conjunction()
    if (left := parser.peek()) is not None:
        raise InvalidArgument(f"filter: unexpected {left[1]!r}")
    return query
