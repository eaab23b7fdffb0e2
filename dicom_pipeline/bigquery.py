"""BigQuery queries of the export function (the reconciler's anti-join), through google-api-python-client's
bundled BigQuery v2 discovery document: no extra dependency in the deployed function."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .errors import TableMissing, classify, http_status

_HTTP_TIMEOUT, _QUERY_BOUND = 60, 600.0  # seconds


def query_rows(project: str, sql: str) -> list[Sequence[Any]]:
    """Rows of a standard-SQL query (values as BigQuery's REST API gives them: strings); TableMissing for a
    table that does not exist."""
    import google.auth
    import google_auth_httplib2
    import httplib2
    from googleapiclient import discovery

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/bigquery"])
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=_HTTP_TIMEOUT))
    jobs = discovery.build("bigquery", "v2", http=http, cache_discovery=False, static_discovery=True).jobs()
    try:
        answer = jobs.query(projectId=project, body={"query": sql, "useLegacySql": False,
                                                      "timeoutMs": 30_000}).execute()
        deadline = time.monotonic() + _QUERY_BOUND
        rows: list[Sequence[Any]] = []
        job = answer["jobReference"]
        while True:
            if answer.get("jobComplete"):
                rows += [[cell.get("v") for cell in row["f"]] for row in answer.get("rows", [])]
                if not answer.get("pageToken"):
                    return rows
            elif time.monotonic() > deadline:
                raise TimeoutError(f"BigQuery job {job.get('jobId')} still running after {_QUERY_BOUND:.0f} s")
            answer = jobs.getQueryResults(projectId=project, jobId=job["jobId"], location=job.get("location"),
                                          pageToken=answer.get("pageToken"), timeoutMs=30_000).execute()
    except Exception as exc:
        if http_status(exc) == 404 and "Not found: Table" in str(exc):
            raise TableMissing(str(exc)) from exc
        raise classify(exc, "BigQuery query") from exc
