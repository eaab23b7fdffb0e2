# One identity per function, holding only what that function calls (see iam.tf).
resource "google_service_account" "import_function" {
  project      = var.project_id
  account_id   = "${var.resource_prefix}-import-fn"
  display_name = "DICOM import function (${var.resource_prefix})"
}

resource "google_service_account" "export_function" {
  project      = var.project_id
  account_id   = "${var.resource_prefix}-export-fn"
  display_name = "DICOM metadata export function (${var.resource_prefix})"
}

# The identity Eventarc uses to deliver events to the two functions.
resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "${var.resource_prefix}-trigger"
  display_name = "Eventarc triggers of the DICOM functions (${var.resource_prefix})"
}

# Service agents created explicitly: right after the API is enabled they may not exist yet,
# and a grant to a missing agent fails (terraform-provider-google#7020).
resource "google_project_service_identity" "healthcare" {
  provider = google-beta
  project  = var.project_id
  service  = "healthcare.googleapis.com"

  depends_on = [google_project_service.apis]
}

resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

data "google_bigquery_default_service_account" "bigquery" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

# Cloud Build builds the functions' images as this identity instead of the default compute service account,
# which new projects no longer grant anything to.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.resource_prefix}-fn-build"
  display_name = "Builds of the DICOM functions (${var.resource_prefix})"
}
