"""Storage answers datasets, stores and finished operations from memory: every change this process makes is
seen at once, each caller gets its own copy, and a fresh Storage on the same directory reads the same state
from the index. Real SQLite in a temporary directory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from healthcare_emulator.errors import NotFound
from healthcare_emulator.store.dicom_store import Storage

DATASET = "projects/p/locations/l/datasets/d"
STORE = f"{DATASET}/dicomStores/s"


@pytest.fixture
def storage(tmp_path):
    storage = Storage(tmp_path)
    storage.create_dataset(DATASET, "projects/p/locations/l", {"name": DATASET})
    storage.create_store(STORE, DATASET, {"name": STORE})
    return storage


def test_changes_are_seen_at_once(storage):
    store_id, body = storage.get_store(STORE)
    assert body == {"name": STORE}
    storage.put_store(STORE, {"name": STORE, "labels": {"a": "b"}})
    assert storage.get_store(STORE) == (store_id, {"name": STORE, "labels": {"a": "b"}})
    storage.put_dataset(DATASET, {"name": DATASET, "timeZone": "UTC"})
    assert storage.get_dataset(DATASET)["timeZone"] == "UTC"
    storage.delete_store(STORE)
    with pytest.raises(NotFound):
        storage.get_store(STORE)
    storage.create_store(STORE, DATASET, {"name": STORE})
    assert storage.get_store(STORE)[0] != store_id  # a new store under the old name


def test_each_get_returns_its_own_copy(storage):
    storage.get_store(STORE)[1]["labels"] = {"changed": "by a caller"}
    storage.get_dataset(DATASET)["timeZone"] = "changed"
    storage.save_operation(f"{DATASET}/operations/1", DATASET, {"name": "op", "done": True, "response": {}})
    storage.get_operation(f"{DATASET}/operations/1")["response"]["x"] = 1
    assert storage.get_store(STORE)[1] == {"name": STORE}
    assert storage.get_dataset(DATASET) == {"name": DATASET}
    assert storage.get_operation(f"{DATASET}/operations/1")["response"] == {}


def test_finished_operations_go_with_their_dataset_and_with_reset(storage):
    name = f"{DATASET}/operations/7"
    storage.save_operation(name, DATASET, {"name": name, "metadata": {}})
    assert "done" not in storage.get_operation(name)
    storage.save_operation(name, DATASET, {"name": name, "metadata": {}, "done": True})
    assert storage.get_operation(name)["done"] is True
    storage.delete_dataset(DATASET)
    for get in (lambda: storage.get_operation(name), lambda: storage.get_dataset(DATASET),
                lambda: storage.get_store(STORE)):
        with pytest.raises(NotFound):
            get()
    storage.create_dataset(DATASET, "projects/p/locations/l", {"name": DATASET})
    storage.save_operation(name, DATASET, {"name": name, "done": True})
    storage.reset()
    with pytest.raises(NotFound):
        storage.get_operation(name)


def test_a_fresh_storage_reads_the_same_state(storage, tmp_path):
    storage.put_store(STORE, {"name": STORE, "labels": {"k": "v"}})
    storage.save_operation(f"{DATASET}/operations/1", DATASET, {"name": "op", "done": True})
    again = Storage(tmp_path)
    assert again.get_store(STORE) == storage.get_store(STORE)
    assert again.get_operation(f"{DATASET}/operations/1") == {"name": "op", "done": True}


def test_reads_racing_with_changes_end_with_the_last_change(storage):
    def read(_: int) -> None:
        for _ in range(50):
            storage.get_store(STORE)

    with ThreadPoolExecutor(4) as pool:
        readers = [pool.submit(read, n) for n in range(3)]
        for n in range(50):
            storage.put_store(STORE, {"name": STORE, "labels": {"n": str(n)}})
        for future in readers:
            future.result()
    assert storage.get_store(STORE)[1]["labels"] == {"n": "49"}
