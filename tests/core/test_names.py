"""Resource names as value objects (dicom_pipeline.names)."""

from __future__ import annotations

import pytest

from dicom_pipeline.names import BigQueryTableUri, DicomStoreName, GcsUri, InstancePath, filter_line

STORE = "projects/p/locations/l/datasets/d/dicomStores/s"


def test_names() -> None:
    path = InstancePath.from_string(f"{STORE}/dicomWeb/studies/1.2/series/1.2.3/instances/1.2.3.4")
    assert path.store == DicomStoreName.from_string(STORE)
    assert path.filter_line == "/studies/1.2/series/1.2.3/instances/1.2.3.4"
    assert str(path).startswith(STORE)
    assert str(BigQueryTableUri.from_string("bq://example.com:p.d.t")) == "bq://example.com:p.d.t"
    assert GcsUri.from_string("gs://b/a*b.dcm").has_wildcard and not GcsUri.from_string("gs://b/a.dcm").has_wildcard
    assert filter_line("studies/1.2/series/3") == "/studies/1.2/series/3"
    for bad in ("/studies/x", "/series/1", "/studies/1/instances/2", ""):
        with pytest.raises(ValueError):
            filter_line(bad)
