resource "google_healthcare_dataset" "dicom" {
  project  = var.project_id
  name     = var.healthcare_dataset_id
  location = var.region

  dynamic "encryption_spec" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_spec.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}

resource "google_healthcare_dicom_store" "store" {
  name    = var.dicom_store_id
  dataset = google_healthcare_dataset.dicom.id
  labels  = var.labels

  notification_config {
    pubsub_topic = google_pubsub_topic.trigger["export"].id
    # Without this, instances stored by dicomStores.import publish nothing and the export never runs.
    send_for_bulk_import = true
  }

  # The agent must be able to publish before the first instance arrives.
  depends_on = [google_pubsub_topic_iam_member.healthcare_agent_notifications]
}
