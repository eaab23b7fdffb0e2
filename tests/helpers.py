"""Small helpers the tests share: waiting for operations and running imports through the real client."""

from __future__ import annotations

import time


def wait(healthcare, operation: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while "done" not in operation:
        assert time.monotonic() < deadline, f"operation {operation['name']} still running after {timeout} s"
        time.sleep(0.05)
        operation = healthcare.projects().locations().datasets().operations().get(name=operation["name"]).execute()
    return operation


def run_import(healthcare, store, uri: str, **extra: object) -> dict:
    stores = healthcare.projects().locations().datasets().dicomStores()
    operation = stores.import_(name=store.name, body={"gcsSource": {"uri": uri}, **extra}).execute()
    return wait(healthcare, operation)


def metrics(healthcare, store) -> dict:
    return healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(name=store.name).execute()
