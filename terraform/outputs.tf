output "bigquery_dataset_id" {
  description = "BigQuery dataset of the exported metadata."
  value       = google_bigquery_dataset.dicom.dataset_id
}

output "bigquery_table_uri" {
  description = "Table the export function appends to (BIGQUERY_TABLE)."
  value       = local.bigquery_table_uri
}

output "dead_letter_subscription" {
  description = "Pull subscription holding notifications the export function could not process."
  value       = google_pubsub_subscription.dead_letter.name
}

output "dicom_store" {
  description = "Full resource name of the DICOM store (DICOM_STORE)."
  value       = google_healthcare_dicom_store.store.id
}

output "export_bucket" {
  description = "Bucket for exports to Cloud Storage, or null when enable_gcs_export is false."
  value       = var.enable_gcs_export ? google_storage_bucket.buckets["export"].name : null
}

output "export_function" {
  description = "Name of the export function."
  value       = google_cloudfunctions2_function.export.name
}

output "healthcare_service_agent" {
  description = "Email of the Cloud Healthcare service agent."
  value       = google_project_service_identity.healthcare.email
}

output "import_function" {
  description = "Name of the import function."
  value       = google_cloudfunctions2_function.import.name
}

output "landing_bucket" {
  description = "Bucket to upload .dcm files to."
  value       = google_storage_bucket.buckets["landing"].name
}

output "notification_topic" {
  description = "Topic the DICOM store publishes a notification to per stored instance."
  value       = google_pubsub_topic.notifications.id
}

output "staging_bucket" {
  description = "Bucket of filter files, staged copies, outcome and idempotency records and dead letters (STAGING_BUCKET)."
  value       = google_storage_bucket.buckets["staging"].name
}
