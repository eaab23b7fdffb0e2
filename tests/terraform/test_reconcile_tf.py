"""terraform/reconcile.tf: the reconciler's schedule drives the export path, with the grants its calls need."""

from __future__ import annotations

from .test_terraform import resource


def test_the_schedule_publishes_a_reconcile_request_to_the_export_trigger_topic() -> None:
    job = resource("google_cloud_scheduler_job", "reconcile")
    (target,) = job["pubsub_target"]
    # The export trigger's topic: the message goes through the export function, its retries and dead letters.
    assert target["topic_name"] == '${google_pubsub_topic.trigger["export"].id}'
    assert target["data"] == "${base64encode(jsonencode({reconcile = true}))}"
    assert resource("google_project_service", "scheduler")["service"] == "cloudscheduler.googleapis.com"


def test_the_export_function_may_query_the_dataset_and_nothing_more() -> None:
    job_user = resource("google_project_iam_member", "export_function_job_user")
    assert (job_user["role"], job_user["member"]) == ("roles/bigquery.jobUser", "${local.export_function}")
    reader = resource("google_bigquery_dataset_iam_member", "export_function_reader")
    assert (reader["role"], reader["member"]) == ("roles/bigquery.dataViewer", "${local.export_function}")
    assert reader["dataset_id"] == "${google_bigquery_dataset.dicom.dataset_id}"
    operations = resource("google_healthcare_dataset_iam_member", "export_function_reconcile")
    assert (operations["role"], operations["member"]) == ("roles/healthcare.datasetViewer", "${local.export_function}")
