"""Waiting for long-running operations, reporting them, and the `operations` commands."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from typing import Any

from dicom_pipeline import healthcare

from .common import FAILED, OK, UsageError, endpoint, print_json
from .permissions import operation_permission_denied, role_hint
from .progress import OperationProgress, counters


def wait(endpoint_url: str | None, operation: dict[str, Any], timeout: float, unit: str = "item") -> dict[str, Any]:
    """Poll until done, drawing the progress bar; a timeout is a usage error that names how to resume."""
    deadline = time.monotonic() + timeout
    with OperationProgress(operation["name"], unit) as progress:
        progress.update(operation)
        while not operation.get("done"):
            if time.monotonic() >= deadline:
                raise UsageError(f"operation {operation['name']} still running after {timeout:g} s;"
                                 f" run `dicom-pipeline operations wait {operation['name']}` or raise --timeout")
            operation = healthcare.wait(endpoint_url, operation, min(1.0, max(0.0, deadline - time.monotonic())))
            progress.update(operation)
    return operation


def log_entries(operation: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-file reasons from metadata.logsUrl when it is an http(s) URL answering {"entries": [...]}."""
    url = operation.get("metadata", {}).get("logsUrl", "")
    if not url.startswith(("http://", "https://")):
        return []
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - scheme checked above
            body = json.load(response)
    except (OSError, ValueError):
        return []
    entries = body.get("entries") if isinstance(body, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def summary(operation: dict[str, Any]) -> dict[str, Any]:
    c = counters(operation)
    result: dict[str, Any] = {"name": operation["name"], "done": bool(operation.get("done")),
                              "success": c["success"], "failure": c["failure"]}
    if "error" in operation:
        result["error"] = operation["error"]
    return result


def report(args: argparse.Namespace, operation: dict[str, Any]) -> int:
    """Counts (and, on failure, the per-file reasons and the missing role if denied); exit 1 if anything failed."""
    result = summary(operation)
    failed = "error" in operation or result["failure"] > 0
    if failed:
        result["logs"] = log_entries(operation)
    if operation_permission_denied(operation):
        result["fix"] = role_hint(getattr(args, "iam", ""))
    if args.format == "json":
        print_json(result)
    else:
        print(f"{result['name']}: {result['success']} succeeded, {result['failure']} failed")
        if "error" in result:
            print(f"error: {result['error'].get('message', result['error'])}")
        if "fix" in result:
            print(f"fix: {result['fix']}")
        for entry in result.get("logs", []):
            print(f"  {entry.get('resource') or entry.get('file') or ''}: "
                  f"{entry.get('message') or json.dumps(entry, sort_keys=True)}")
    return FAILED if failed else OK


def started(args: argparse.Namespace, operation: dict[str, Any], unit: str) -> int:
    """After a call that returned an Operation: print its name (--async) or wait and report."""
    if args.async_:
        print(json.dumps({"name": operation["name"]}) if args.format == "json" else operation["name"])
        return OK
    return report(args, wait(endpoint(args), operation, args.timeout, unit))


def cmd_describe(args: argparse.Namespace) -> int:
    operation = healthcare.get_operation(endpoint(args), args.name)
    if args.format == "json":
        print_json(operation)
        return OK
    if operation.get("done"):
        return report(args, operation)
    c = counters(operation)
    print(f"{operation['name']}: running, {c['success']} succeeded, {c['failure']} failed, {c['pending']} pending")
    return OK


def cmd_wait(args: argparse.Namespace) -> int:
    url = endpoint(args)
    return report(args, wait(url, healthcare.get_operation(url, args.name), args.timeout))


def cmd_list(args: argparse.Namespace) -> int:
    found = healthcare.list_operations(endpoint(args), args.dataset)
    if args.format == "json":
        print_json([{**summary(op), "method": _method(op)} for op in found])
        return OK
    for op in found:
        result = summary(op)
        state = ("failed" if "error" in op else "done") if result["done"] else "running"
        print(f"{op['name']}  {_method(op)}  {state}  {result['success']} ok  {result['failure']} failed")
    return OK


def _method(operation: dict[str, Any]) -> str:
    """ImportDicomData, ExportDicomData, ... (the last part of metadata.apiMethodName)."""
    return str(operation.get("metadata", {}).get("apiMethodName", "")).rsplit(".", 1)[-1]
