resource "google_pubsub_topic" "notifications" {
  # checkov:skip=CKV_GCP_83: CMEK is optional (var.kms_key_name); Google-managed encryption otherwise
  project                    = var.project_id
  name                       = "${var.resource_prefix}-notifications"
  kms_key_name               = var.kms_key_name
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}

# Messages the export trigger failed to deliver max_delivery_attempts times end here.
resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: CMEK is optional (var.kms_key_name); Google-managed encryption otherwise
  project                    = var.project_id
  name                       = "${var.resource_prefix}-dead-letter"
  kms_key_name               = var.kms_key_name
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}

# Keeps dead-lettered messages until an operator pulls them (a topic alone would drop them).
resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.resource_prefix}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  labels                     = var.labels
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires
  }
}
