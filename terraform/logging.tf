# The Healthcare API writes per-file import/export failures to Cloud Logging, not to the operation. The
# functions read them through this view of the _Default bucket only (roles/logging.viewAccessor conditioned
# on the view's name, iam.tf), with entries.list(resourceNames = [view]); HEALTHCARE_LOG_VIEW names it.
resource "google_logging_log_view" "healthcare" {
  parent      = "projects/${var.project_id}"
  location    = "global"
  bucket      = local.log_bucket
  name        = local.log_view_id
  description = "Cloud Healthcare API DICOM store entries, read by the DICOM functions (${var.resource_prefix})"
  filter      = local.log_view_filter

  depends_on = [google_project_service.apis]
}

# Data Access audit logs: who read or wrote which object or DICOM instance. The access-log checkov skip on
# the buckets relies on these. Authoritative for each service's audit config in this project (see README).
resource "google_project_iam_audit_config" "data_access" {
  for_each = toset(["healthcare.googleapis.com", "storage.googleapis.com"])

  project = var.project_id
  service = each.value

  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}
