locals {
  repo_root = "${path.module}/.."

  # Exactly what the functions import: the deploy entry point, the handlers and the core.
  function_source_files = sort(tolist(fileset(local.repo_root, "{main.py,requirements.txt,handlers/**/*.py,dicom_pipeline/**/*.py}")))

  bigquery_table_uri = "bq://${var.project_id}.${google_bigquery_dataset.dicom.dataset_id}.${var.bigquery_table_id}"

  # Names exactly as dicom_pipeline/config.py reads them.
  import_environment = {
    DICOM_STORE            = google_healthcare_dicom_store.store.id
    GOOGLE_CLOUD_PROJECT   = var.project_id
    IMPORT_STORAGE_CLASS   = var.import_storage_class
    IMPORT_SUFFIXES        = join(",", var.import_suffixes)
    OPERATION_WAIT_SECONDS = tostring(var.operation_wait_seconds)
    STAGING_BUCKET         = google_storage_bucket.buckets["staging"].name
  }

  export_environment = {
    BIGQUERY_TABLE           = local.bigquery_table_uri
    DICOM_STORE              = google_healthcare_dicom_store.store.id
    EXPORT_WRITE_DISPOSITION = var.export_write_disposition
    GOOGLE_CLOUD_PROJECT     = var.project_id
    OPERATION_WAIT_SECONDS   = tostring(var.operation_wait_seconds)
    STAGING_BUCKET           = google_storage_bucket.buckets["staging"].name
  }
}

data "archive_file" "function_source" {
  type        = "zip"
  output_path = "${path.module}/.build/function-source.zip"

  dynamic "source" {
    for_each = local.function_source_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }
}

# Named by content hash: any code change gives a new object, and so a new deployment.
resource "google_storage_bucket_object" "function_source" {
  name   = "function-source-${data.archive_file.function_source.output_md5}.zip"
  bucket = google_storage_bucket.buckets["source"].name
  source = data.archive_file.function_source.output_path
}

resource "google_cloudfunctions2_function" "import" {
  project     = var.project_id
  location    = var.region
  name        = "${var.resource_prefix}-import"
  description = "Imports each DICOM object finalized in the landing bucket into the DICOM store"
  labels      = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = "import_dicom_object"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket_object.function_source.bucket
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory   = "512M"
    available_cpu      = "1" # concurrency above 1 needs a whole vCPU
    timeout_seconds    = 540
    max_instance_count = var.function_max_instances
    # Handlers mostly wait on operations; the export function batches the notifications served together.
    max_instance_request_concurrency = var.function_concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.import_function.email
    environment_variables            = local.import_environment
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.buckets["landing"].name
    }
  }

  depends_on = [
    google_project_iam_member.gcs_agent_publisher,
    google_project_iam_member.trigger_event_receiver,
    google_storage_bucket_iam_member.import_function,
    google_storage_bucket_iam_member.build_source,
    google_project_iam_member.build,
    google_healthcare_dicom_store_iam_member.functions,
  ]
}

resource "google_cloudfunctions2_function" "export" {
  project     = var.project_id
  location    = var.region
  name        = "${var.resource_prefix}-export"
  description = "Exports the metadata of each instance the DICOM store announces to BigQuery"
  labels      = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = "export_dicom_metadata"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket_object.function_source.bucket
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    available_memory   = "512M"
    available_cpu      = "1" # concurrency above 1 needs a whole vCPU
    timeout_seconds    = 540
    max_instance_count = var.function_max_instances
    # Handlers mostly wait on operations; the export function batches the notifications served together.
    max_instance_request_concurrency = var.function_concurrency
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.export_function.email
    environment_variables            = local.export_environment
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.notifications.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
  }

  depends_on = [
    google_project_iam_member.trigger_event_receiver,
    google_storage_bucket_iam_member.export_function,
    google_storage_bucket_iam_member.build_source,
    google_project_iam_member.build,
    google_healthcare_dicom_store_iam_member.functions,
  ]
}

# Eventarc owns the subscription behind the Pub/Sub trigger and the provider cannot set its dead-letter
# policy, so it is attached here, after the trigger exists: after max_delivery_attempts failed deliveries
# (with 10-600 s backoff) the message goes to the dead-letter topic instead of being retried forever.
resource "terraform_data" "export_dead_letter_policy" {
  triggers_replace = [
    google_cloudfunctions2_function.export.event_trigger[0].trigger,
    google_pubsub_topic.dead_letter.id,
    var.max_delivery_attempts,
  ]

  provisioner "local-exec" {
    interpreter = ["bash", "-euc"]
    command     = <<-EOT
      sub="$(gcloud eventarc triggers describe "$TRIGGER" --project "$PROJECT" --location "$REGION" \
        --format='value(transport.pubsub.subscription)')"
      gcloud pubsub subscriptions update "$sub" --project "$PROJECT" \
        --dead-letter-topic="$DEAD_LETTER_TOPIC" --max-delivery-attempts="$MAX_ATTEMPTS" \
        --min-retry-delay=10s --max-retry-delay=600s
      # Forwarding to the dead-letter topic acks the original message as the Pub/Sub service agent.
      gcloud pubsub subscriptions add-iam-policy-binding "$sub" --project "$PROJECT" \
        --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber
    EOT
    environment = {
      DEAD_LETTER_TOPIC = google_pubsub_topic.dead_letter.id
      MAX_ATTEMPTS      = tostring(var.max_delivery_attempts)
      PROJECT           = var.project_id
      PUBSUB_AGENT      = google_project_service_identity.pubsub.email
      REGION            = var.region
      TRIGGER           = google_cloudfunctions2_function.export.event_trigger[0].trigger
    }
  }

  depends_on = [google_pubsub_topic_iam_member.pubsub_agent_dead_letter]
}
