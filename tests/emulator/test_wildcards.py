"""gs:// wildcard rules of dicomStores.import (reference §4.1), unit-level and through the real client."""

from __future__ import annotations

import pytest

from dicom_samples import synthetic_instance
from healthcare_emulator.errors import InvalidArgument
from healthcare_emulator.jobs.cloud_storage import parse_object_pattern
from tests.helpers import run_import

OBJECTS = [
    "top.dcm", "Example.dcm", "Example1.dcm", "Example01.dcm", "ExampleA.txt",
    "dir/a.dcm", "dir/b.DCM", "dir/notes.txt", "dir/sub/c.dcm", "dir/sub/deeper/d.dcm", "dirx/e.dcm",
    "weird[1].dcm",
]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("top.dcm", {"top.dcm"}),
        ("*", {"top.dcm", "Example.dcm", "Example1.dcm", "Example01.dcm", "ExampleA.txt", "weird[1].dcm"}),
        ("*.dcm", {"top.dcm", "Example.dcm", "Example1.dcm", "Example01.dcm", "weird[1].dcm"}),
        ("Example?.dcm", {"Example1.dcm"}),
        ("Example?.*", {"Example1.dcm", "ExampleA.txt"}),
        ("dir/*", {"dir/a.dcm", "dir/b.DCM", "dir/notes.txt"}),
        ("dir/**", {"dir/a.dcm", "dir/b.DCM", "dir/notes.txt", "dir/sub/c.dcm", "dir/sub/deeper/d.dcm"}),
        ("dir/**.dcm", {"dir/a.dcm", "dir/sub/c.dcm", "dir/sub/deeper/d.dcm"}),
        ("dir*/*.dcm", {"dir/a.dcm", "dirx/e.dcm"}),
        ("*/sub/*.dcm", {"dir/sub/c.dcm"}),
        ("**", set(OBJECTS)),
        ("weird[1].dcm", {"weird[1].dcm"}),  # '[' is not a wildcard in this API
    ],
)
def test_pattern_matching(pattern, expected):
    parsed = parse_object_pattern(f"gs://bucket/{pattern}")
    assert {name for name in OBJECTS if parsed.matches(name)} == expected
    assert all(name.startswith(parsed.prefix) for name in expected)


@pytest.mark.parametrize("pattern", ["a/**/b.dcm", "**/*.dcm", "a/***", "a?/**", "**.dcm/x", "*/**"])
def test_invalid_patterns(pattern):
    with pytest.raises(InvalidArgument, match="wildcard"):
        parse_object_pattern(f"gs://bucket/{pattern}")


@pytest.mark.integration
def test_import_reads_exactly_the_matching_objects_and_keeps_the_storage_class(healthcare, new_store, new_bucket):
    store, bucket = new_store(), new_bucket()
    instances = {}
    for index, name in enumerate(OBJECTS):
        instances[name] = synthetic_instance(seed=index)
        bucket.blob(name).upload_from_string(instances[name].data)

    operation = run_import(healthcare, store, f"gs://{bucket.name}/dir/**.dcm",
                           blobStorageSettings={"blobStorageClass": "COLDLINE"})

    assert operation["metadata"]["counter"] == {"success": "3"}
    instances_api = healthcare.projects().locations().datasets().dicomStores().dicomWeb().studies().series() \
        .instances()
    for name in OBJECTS:
        instance = instances[name]
        resource = (f"{store.name}/dicomWeb/studies/{instance.study_uid}/series/{instance.series_uid}"
                    f"/instances/{instance.sop_uid}")
        request = instances_api.getStorageInfo(resource=resource)
        if name in {"dir/a.dcm", "dir/sub/c.dcm", "dir/sub/deeper/d.dcm"}:
            info = request.execute()
            assert info["referencedResource"] == resource
            assert info["blobStorageInfo"]["storageClass"] == "COLDLINE"
            assert info["blobStorageInfo"]["sizeBytes"] == str(len(instance.data))
        else:
            from googleapiclient.errors import HttpError

            with pytest.raises(HttpError) as raised:
                request.execute()
            assert raised.value.status_code == 404


def test_listing_follows_every_page(fake_gcs, new_bucket):
    from healthcare_emulator.jobs.cloud_storage import GcsReader

    bucket = new_bucket()
    for i in range(23):
        bucket.blob(f"p/{i:02d}.dcm").upload_from_string(b"x" * i)
    bucket.blob("p/sub/deeper.dcm").upload_from_string(b"x")
    reader = GcsReader(fake_gcs.url, from_env=False)
    reader.list_page_size = 5  # five pages and a bit: every page token is followed

    flat = reader.list_matching(parse_object_pattern(f"gs://{bucket.name}/p/*"))
    assert [(o.name, o.size) for o in flat] == [(f"p/{i:02d}.dcm", i) for i in range(23)]
    assert len(reader.list_matching(parse_object_pattern(f"gs://{bucket.name}/p/**"))) == 24
    from healthcare_emulator.errors import NotFound

    with pytest.raises(NotFound, match="gs://no-such-bucket-here not found"):
        reader.list_matching(parse_object_pattern("gs://no-such-bucket-here/p/*"))
