resource "google_storage_bucket" "buckets" {
  # checkov:skip=CKV_GCP_62: access logs go to Cloud Audit Logs (Data Access logs, enabled in logging.tf), not to a log bucket
  # checkov:skip=CKV_GCP_78: the staging bucket holds only transient copies and records: versioning would keep deleted staged copies (PHI) longer
  for_each = local.buckets

  project                     = var.project_id
  name                        = each.value.name
  location                    = var.region # single region, with the Healthcare dataset and the functions
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true # also required by the managed folders below
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = each.value.versioning
  }

  dynamic "soft_delete_policy" {
    for_each = each.value.soft_delete_seconds == null ? [] : [each.value.soft_delete_seconds]
    content {
      retention_duration_seconds = soft_delete_policy.value
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.rules
    content {
      condition {
        age                        = lifecycle_rule.value.age
        matches_prefix             = lifecycle_rule.value.prefixes
        days_since_noncurrent_time = lifecycle_rule.value.noncurrent_days
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}

# The staging prefixes the Healthcare service agent must read (staged copies, export filter files), as managed
# folders so that the agent is granted those and nothing else of the staging bucket (see iam.tf).
resource "google_storage_managed_folder" "agent_readable" {
  for_each = toset(local.agent_readable_folders)

  bucket = google_storage_bucket.buckets["staging"].name
  name   = each.value
}

# Uploads announce themselves on a topic we own; the import trigger's push subscription reads it (pubsub.tf).
resource "google_storage_notification" "landing" {
  bucket         = google_storage_bucket.buckets["landing"].name
  topic          = google_pubsub_topic.trigger["import"].id
  payload_format = "JSON_API_V1"
  event_types    = ["OBJECT_FINALIZE"]

  depends_on = [google_pubsub_topic_iam_member.gcs_agent_landing_events]
}
