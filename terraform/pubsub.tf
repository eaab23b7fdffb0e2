# Each function's events: a topic we own → a push subscription to the function (retried with backoff,
# dead-lettered after max_delivery_attempts) → the function. Everything is in Terraform state; requeueing an
# event means publishing it to the trigger's topic again (see README.md, "Triggers and dead letters").
resource "google_pubsub_topic" "trigger" {
  # checkov:skip=CKV_GCP_83: CMEK is optional (var.kms_key_name); Google-managed encryption otherwise
  for_each = local.triggers

  project                    = var.project_id
  name                       = each.value.topic
  kms_key_name               = var.kms_key_name
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: CMEK is optional (var.kms_key_name); Google-managed encryption otherwise
  for_each = local.dead_letter_topics

  project                    = var.project_id
  name                       = each.value
  kms_key_name               = var.kms_key_name
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}

resource "google_pubsub_subscription" "trigger" {
  for_each = local.triggers

  project = var.project_id
  name    = each.value.function
  topic   = google_pubsub_topic.trigger[each.key].id
  labels  = var.labels
  # The functions time out at 540 s; the push must not be redelivered while one still runs.
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.functions[each.key].service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.trigger.email
      audience              = google_cloudfunctions2_function.functions[each.key].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires
  }

  depends_on = [
    time_sleep.trigger_grants,
  ]
}

# Keeps dead-lettered events until an operator pulls them (a topic alone would drop them).
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.dead_letter_topics

  project                    = var.project_id
  name                       = each.value
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  labels                     = var.labels
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = "" # never expires
  }
}

moved {
  from = google_pubsub_topic.notifications
  to   = google_pubsub_topic.trigger["export"]
}
