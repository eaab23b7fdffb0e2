# The reconciler (dicom_pipeline/reconciler.py) on a schedule: every stored instance without a row in the table
# gets exactly one, also when its notification was lost or an export's answer was. Cloud Scheduler publishes
# {"reconcile": true} to the export trigger's topic, so the pass runs in the export function, through its push
# subscription, retries and dead-letter topic, like any export request.
#
# API calls of one pass → permission → resource (the export function's identity unless said otherwise):
#   healthcare operations.list → healthcare.operations.list → the Healthcare dataset (roles/healthcare.datasetViewer,
#     below); operations.get → healthcare.operations.get → the dataset (custom:operations, iam.tf)
#   healthcare dicomStores.export (whole store → <table>__reconcile, then the missing instances → the table)
#     → healthcare.dicomStores.export → the DICOM store (custom:export, iam.tf); the Healthcare
#     service agent writes both tables (roles/bigquery.dataEditor on the dataset, roles/bigquery.jobUser, iam.tf)
#     and reads the filter file (roles/storage.objectViewer on the staging bucket, iam.tf)
#   bigquery jobs.query, jobs.getQueryResults (COUNT and anti-join of <table>__reconcile and the table)
#     → bigquery.jobs.create → the project (below), bigquery.tables.getData → the BigQuery dataset (below)
#   storage objects get/insert/delete under idempotency/export/ and filters/export/ (claims, intents, filter
#     files) → storage.objects.get/create/delete → the staging bucket (roles/storage.objectUser, iam.tf)
#   pubsub topics.publish of the scheduled message → pubsub.topics.publish → the export trigger's topic, by the
#     Cloud Scheduler service agent (its automatic roles/cloudscheduler.serviceAgent; no grant here)
# The same rows are in iam_table.toml.

locals {
  reconcile_schedule = "*/30 * * * *" # every 30 minutes: each pass exports the whole store to a scratch table
}

resource "google_project_service" "scheduler" {
  project            = var.project_id
  service            = "cloudscheduler.googleapis.com"
  disable_on_destroy = false
}

resource "google_cloud_scheduler_job" "reconcile" {
  project     = var.project_id
  region      = var.region
  name        = "${var.resource_prefix}-reconcile"
  description = "Export the DICOM instances that have no row in ${local.bigquery_table_uri} (dicom-pipeline reconcile)"
  schedule    = local.reconcile_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.trigger["export"].id
    data       = base64encode(jsonencode({ reconcile = true }))
  }

  depends_on = [google_project_service.scheduler]
}

# Project level on purpose: BigQuery jobs belong to a project, and bigquery.jobs.create cannot be granted on
# anything narrower. What the queries can read is limited by the dataset grant below.
resource "google_project_iam_member" "export_function_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.export_function
}

# The anti-join reads the table and the scratch table; dataViewer grants no write.
resource "google_bigquery_dataset_iam_member" "export_function_reader" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.dicom.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = local.export_function
}

# Step 1 of a pass: is any export still running? (operations.list; the functions' custom role has only get.)
resource "google_healthcare_dataset_iam_member" "export_function_reconcile" {
  dataset_id = google_healthcare_dataset.dicom.id
  role       = "roles/healthcare.datasetViewer"
  member     = local.export_function
}
