locals {
  bucket_prefix = coalesce(var.name_prefix, var.project_id)

  # Transient objects the functions write to the staging bucket (see the main README): staged copies (every
  # object of a batched import, and wildcard-named objects) and filter files are needed only while an
  # operation runs; outcome and idempotency records only while redeliveries can arrive. Dead letters are
  # kept longer for operators. Staged copies are a second copy of each upload: kept the shortest time.
  staging_lifecycle = [
    { prefix = "staging/import/", age = var.staged_copy_retention_days },
    { prefix = "filters/export/", age = var.transient_retention_days },
    { prefix = "outcomes/import/", age = var.record_retention_days },
    { prefix = "idempotency/export/", age = var.record_retention_days },
    { prefix = "dead-letter/", age = var.dead_letter_retention_days },
  ]

  core_buckets = {
    landing = { name = "${local.bucket_prefix}-dicom-landing", lifecycle = [] }
    staging = { name = "${local.bucket_prefix}-dicom-staging", lifecycle = local.staging_lifecycle }
    source  = { name = "${local.bucket_prefix}-dicom-functions-source", lifecycle = [] }
  }
  export_bucket = { name = "${local.bucket_prefix}-dicom-export", lifecycle = [] }

  buckets = merge(local.core_buckets, var.enable_gcs_export ? { export = local.export_bucket } : {})
}

resource "google_storage_bucket" "buckets" {
  # checkov:skip=CKV_GCP_62: access logs go to Cloud Audit Logs (Data Access logs), not to a log bucket
  for_each = local.buckets

  project                     = var.project_id
  name                        = each.value.name
  location                    = var.region # single region: the storage trigger must be in the bucket's region
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  # Versioning keeps overwritten objects recoverable for a short while only.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.transient_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.lifecycle
    content {
      condition {
        age            = lifecycle_rule.value.age
        matches_prefix = [lifecycle_rule.value.prefix]
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
