"""fake-gcs-server's filesystem backend, as the local stack runs it: what the pipeline needs works, and stop()
leaves no files behind."""

from __future__ import annotations

import google.cloud.storage as storage
import pytest
from google.api_core.exceptions import NotFound, PreconditionFailed
from google.auth.credentials import AnonymousCredentials

from local_stack.fake_gcs import FakeGcsServer


def test_filesystem_backend_serves_what_the_pipeline_uses_and_cleans_up() -> None:
    server = FakeGcsServer(backend="filesystem").start()
    try:
        root = server._root
        assert root is not None and root.is_dir()
        client = storage.Client(project="p", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": server.url})
        bucket = client.create_bucket("fs-backend")
        record = bucket.blob("idempotency/export/abc.json")
        record.upload_from_string(b"{}", if_generation_match=0)
        first = record.generation
        with pytest.raises(PreconditionFailed):  # the functions' atomic create-if-absent
            bucket.blob("idempotency/export/abc.json").upload_from_string(b"{}", if_generation_match=0)
        record.upload_from_string(b'{"status": "succeeded"}', if_generation_match=first)
        with pytest.raises(PreconditionFailed):  # settling over a generation that moved on
            bucket.blob(record.name).upload_from_string(b"{}", if_generation_match=first)

        dicom = bucket.blob("in/a b.dcm")
        dicom.upload_from_string(b"\0" * 128 + b"DICM" + b"rest", content_type="application/dicom")
        exact = bucket.blob("in/a b.dcm", generation=dicom.generation)
        assert exact.download_as_bytes(start=128, end=131, raw_download=True) == b"DICM"  # the marker read
        bucket.copy_blob(dicom, bucket, "staging/import/x.dcm", source_generation=dicom.generation)
        assert [b.name for b in client.list_blobs("fs-backend", prefix="staging/")] == ["staging/import/x.dcm"]
        dicom.upload_from_string(b"newer")
        with pytest.raises(NotFound):  # an overwritten generation is gone (no versioning), as the import expects
            bucket.blob("in/a b.dcm", generation=exact.generation).download_as_bytes(start=128, end=131)
    finally:
        server.stop()
    assert not root.exists()


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="memory or filesystem"):
        FakeGcsServer(backend="s3")
