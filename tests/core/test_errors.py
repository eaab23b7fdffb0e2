"""Error classification (dicom_pipeline.errors): which failures are worth a retry."""

from __future__ import annotations

import httplib2
import pytest
from googleapiclient.errors import HttpError

from dicom_pipeline.errors import PermanentError, TransientError, classify, classify_operation_error


def _http_error(status: int) -> HttpError:
    return HttpError(httplib2.Response({"status": status}), b'{"error": {"message": "m"}}')


@pytest.mark.parametrize(("status", "kind"), [(429, TransientError), (500, TransientError), (503, TransientError),
                                              (403, TransientError), (400, PermanentError), (422, PermanentError)])
def test_http_errors_are_classified(status, kind) -> None:
    assert type(classify(_http_error(status), "call")) is kind


def test_other_errors_are_classified() -> None:
    assert isinstance(classify(TimeoutError("t"), "x"), TransientError)
    assert isinstance(classify(ConnectionRefusedError("c"), "x"), TransientError)
    assert isinstance(classify_operation_error({"code": 6, "message": "exists"}, "x"), PermanentError)
    assert isinstance(classify_operation_error({"code": 14}, "x"), TransientError)
