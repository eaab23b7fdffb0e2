# One identity per function, holding only what that function calls (see iam.tf and iam_table.toml).
# Service accounts need the IAM API: each depends on the enabled APIs.
resource "google_service_account" "import_function" {
  project      = var.project_id
  account_id   = local.account_ids.import_function
  display_name = "DICOM import function (${var.resource_prefix})"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "export_function" {
  project      = var.project_id
  account_id   = local.account_ids.export_function
  display_name = "DICOM metadata export function (${var.resource_prefix})"

  depends_on = [google_project_service.apis]
}

# The identity Pub/Sub signs its pushes to the two functions with (OIDC token).
resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = local.account_ids.trigger
  display_name = "Pub/Sub push to the DICOM functions (${var.resource_prefix})"

  depends_on = [google_project_service.apis]
}

# Cloud Build builds the functions' images as this identity instead of the default compute service account,
# which new projects no longer grant anything to.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = local.account_ids.build
  display_name = "Builds of the DICOM functions (${var.resource_prefix})"

  depends_on = [google_project_service.apis]
}

# Service agents created explicitly: right after the API is enabled they may not exist yet,
# and a grant to a missing agent fails (terraform-provider-google#7020).
resource "google_project_service_identity" "agents" {
  provider = google-beta
  for_each = toset(["artifactregistry.googleapis.com", "healthcare.googleapis.com", "pubsub.googleapis.com"])

  project = var.project_id
  service = each.value

  depends_on = [google_project_service.apis]
}

moved {
  from = google_project_service_identity.healthcare
  to   = google_project_service_identity.agents["healthcare.googleapis.com"]
}

moved {
  from = google_project_service_identity.pubsub
  to   = google_project_service_identity.agents["pubsub.googleapis.com"]
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

data "google_bigquery_default_service_account" "bigquery" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

# The project number names the functions service's staging bucket (gcf-v2-sources-NUMBER-REGION).
data "google_project" "this" {
  project_id = var.project_id
}
