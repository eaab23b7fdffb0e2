output "bigquery_dataset_id" {
  description = "BigQuery dataset of the exported metadata."
  value       = google_bigquery_dataset.dicom.dataset_id
}

output "bigquery_table_uri" {
  description = "Table the export function appends to (BIGQUERY_TABLE)."
  value       = local.bigquery_table_uri
}

output "dead_letter_subscriptions" {
  description = "Per trigger (import, export): the pull subscription keeping the events its function could not process."
  value       = { for k, s in google_pubsub_subscription.dead_letter : k => s.id }
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
  value       = google_cloudfunctions2_function.functions["export"].name
}

output "healthcare_log_view" {
  description = "Log view of the Healthcare API's entries the functions read (HEALTHCARE_LOG_VIEW)."
  value       = local.log_view_name
}

output "healthcare_service_agent" {
  description = "Email of the Cloud Healthcare service agent."
  value       = google_project_service_identity.agents["healthcare.googleapis.com"].email
}

output "import_function" {
  description = "Name of the import function."
  value       = google_cloudfunctions2_function.functions["import"].name
}

output "landing_bucket" {
  description = "Bucket to upload .dcm files to."
  value       = google_storage_bucket.buckets["landing"].name
}

output "notification_topic" {
  description = "Topic the DICOM store publishes a notification to per stored instance (the export trigger's topic)."
  value       = google_pubsub_topic.trigger["export"].id
}

output "staging_bucket" {
  description = "Bucket of filter files, staged copies, outcome and idempotency records and dead letters (STAGING_BUCKET)."
  value       = google_storage_bucket.buckets["staging"].name
}

output "trigger_topics" {
  description = "Per trigger (import, export): the topic its push subscription reads; publish a message here again to requeue it."
  value       = { for k, t in google_pubsub_topic.trigger : k => t.id }
}
