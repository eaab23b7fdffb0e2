locals {
  bigquery_table_uri = "bq://${var.project_id}.${google_bigquery_dataset.dicom.dataset_id}.${var.bigquery_table_id}"

  # Names exactly as dicom_pipeline/config.py reads them (HEALTHCARE_LOG_VIEW: the view the functions read the
  # Healthcare API's failure entries through, see logging.tf).
  common_environment = {
    DICOM_STORE            = google_healthcare_dicom_store.store.id
    GOOGLE_CLOUD_PROJECT   = var.project_id
    HEALTHCARE_LOG_VIEW    = local.log_view_name
    OPERATION_WAIT_SECONDS = tostring(var.operation_wait_seconds)
    STAGING_BUCKET         = google_storage_bucket.buckets["staging"].name
  }

  import_environment = merge(local.common_environment, {
    IMPORT_STORAGE_CLASS = var.import_storage_class
    IMPORT_SUFFIXES      = join(",", var.import_suffixes)
  })

  export_environment = merge(local.common_environment, {
    BIGQUERY_TABLE           = local.bigquery_table_uri
    EXPORT_WRITE_DISPOSITION = var.export_write_disposition
  })

  functions = {
    import = {
      description = "Imports each DICOM object finalized in the landing bucket into the DICOM store"
      entry_point = "import_dicom_object"
      account     = google_service_account.import_function.email
      environment = local.import_environment
    }
    export = {
      description = "Exports the metadata of each instance the DICOM store announces to BigQuery"
      entry_point = "export_dicom_metadata"
      account     = google_service_account.export_function.email
      environment = local.export_environment
    }
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

# The functions' images, in a repository of ours: the build identity can write here and nowhere else.
resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "${var.resource_prefix}-functions"
  description   = "Images of the DICOM functions (${var.resource_prefix})"
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name
  labels        = var.labels

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.cmek]
}

# IAM grants take up to a few minutes to be seen everywhere: the provider's own examples wait 60 s between the
# grants a build or a delivery needs and the resource that uses them.
resource "time_sleep" "build_grants" {
  create_duration = "60s"

  depends_on = [
    google_artifact_registry_repository_iam_member.build,
    google_project_iam_member.build_logs,
    google_project_iam_member.build_sources,
    google_storage_bucket_iam_member.build_source,
  ]
}

# Both functions are plain gen2 functions without an Eventarc trigger: their events arrive by Pub/Sub push
# (pubsub.tf). The handlers' @functions_framework.cloud_event decorator makes them CloudEvent functions, and
# functions-framework turns a Pub/Sub push body into a messagePublished CloudEvent.
resource "google_cloudfunctions2_function" "functions" {
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = local.triggers[each.key].function
  description = each.value.description
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
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
    ingress_settings                 = "ALLOW_INTERNAL_ONLY" # Pub/Sub push from this project counts as internal
    all_traffic_on_latest_revision   = true
    service_account_email            = each.value.account
    environment_variables            = each.value.environment
  }

  depends_on = [time_sleep.build_grants, time_sleep.function_grants, google_logging_log_view.healthcare]
}

moved {
  from = google_cloudfunctions2_function.import
  to   = google_cloudfunctions2_function.functions["import"]
}

moved {
  from = google_cloudfunctions2_function.export
  to   = google_cloudfunctions2_function.functions["export"]
}
