# The table itself is created by the first dicomStores.export (its schema follows the DICOM data).
resource "google_bigquery_dataset" "dicom" {
  project                    = var.project_id
  dataset_id                 = var.bigquery_dataset_id
  location                   = coalesce(var.bigquery_location, var.region)
  description                = "DICOM metadata exported from ${var.dicom_store_id} by the export function"
  labels                     = var.labels
  delete_contents_on_destroy = false

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}
