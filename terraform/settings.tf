# Everything that depends only on the variables and the files: no resource, data source or provider here.
# tests/terraform/test_evaluation.py copies this file and variables.tf into a provider-free module and lets
# terraform itself evaluate every local below (and every validation) with `terraform test`.
locals {
  services = toset([
    "artifactregistry.googleapis.com", # gen2 functions store their images here
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com", # gen2 functions are built by Cloud Build
    "cloudfunctions.googleapis.com",
    "cloudkms.googleapis.com",
    "healthcare.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com", # the log view the functions read the Healthcare API's failure entries through
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com", # gen2 functions run as Cloud Run services
    "storage.googleapis.com",
  ])

  repo_root = "${path.module}/.."

  # Exactly what the functions import: the deploy entry point, the handlers and the core. One pattern per
  # fileset call: terraform's glob library rejects a "/" inside {…} alternatives ("syntax error in pattern").
  function_source_patterns = ["main.py", "requirements.txt", "handlers/**/*.py", "dicom_pipeline/**/*.py"]
  function_source_files    = sort(distinct(flatten([for p in local.function_source_patterns : tolist(fileset(local.repo_root, p))])))

  # Identities, named from resource_prefix (service account ids: 6-30 characters).
  account_ids = {
    import_function = "${var.resource_prefix}-import-fn"
    export_function = "${var.resource_prefix}-export-fn"
    trigger         = "${var.resource_prefix}-trigger"
    build           = "${var.resource_prefix}-fn-build"
  }

  # Custom role ids allow only letters, digits, "_" and "." (no "-").
  role_prefix = replace(var.resource_prefix, "-", "_")
  custom_roles = {
    import = {
      id          = "${local.role_prefix}_dicom_import"
      title       = "DICOM import function (${var.resource_prefix})"
      permissions = ["healthcare.dicomStores.import"]
    }
    export = {
      id          = "${local.role_prefix}_dicom_export"
      title       = "DICOM metadata export function (${var.resource_prefix})"
      permissions = ["healthcare.dicomStores.export"]
    }
    operations = {
      id          = "${local.role_prefix}_dicom_operations"
      title       = "Polls the Healthcare operations the DICOM functions start (${var.resource_prefix})"
      permissions = ["healthcare.operations.get"]
    }
  }

  # Both triggers: a topic we own, a push subscription to the function with a dead-letter topic, and a pull
  # subscription that keeps what was dead-lettered. Requeue = publish the message again to `topic`.
  triggers = {
    import = { topic = "${var.resource_prefix}-landing-events", function = "${var.resource_prefix}-import" }
    export = { topic = "${var.resource_prefix}-notifications", function = "${var.resource_prefix}-export" }
  }
  dead_letter_topics = { for k, _ in local.triggers : k => "${var.resource_prefix}-${k}-dead-letter" }

  # The Healthcare API's per-file failure entries, readable by the functions through this view only.
  log_view_id     = "${var.resource_prefix}-healthcare-dicom"
  log_bucket      = "projects/${var.project_id}/locations/global/buckets/_Default"
  log_view_name   = "${local.log_bucket}/views/${local.log_view_id}"
  log_view_filter = "resource.type = \"healthcare_dicom_store\""

  bucket_prefix = coalesce(var.name_prefix, var.project_id)

  # Transient objects the functions write to the staging bucket (see the main README): staged copies (every
  # object of a batched import, and wildcard-named objects) and filter files are needed only while an
  # operation runs; outcome and idempotency records only while redeliveries can arrive. Dead letters are
  # kept longer for operators. The Healthcare service agent reads only the prefixes marked agent_reads.
  staging_lifecycle = [
    { prefix = "staging/import/", age = var.staged_copy_retention_days, agent_reads = true },
    { prefix = "filters/export/", age = var.transient_retention_days, agent_reads = true },
    { prefix = "outcomes/import/", age = var.record_retention_days, agent_reads = false },
    { prefix = "idempotency/export/", age = var.record_retention_days, agent_reads = false },
    { prefix = "dead-letter/", age = var.dead_letter_retention_days, agent_reads = false },
  ]
  agent_readable_folders = [for rule in local.staging_lifecycle : rule.prefix if rule.agent_reads]

  # Delete rules per bucket: age (optionally under prefixes) or days since an object version became noncurrent.
  noncurrent_rule = [{ age = null, prefixes = [], noncurrent_days = var.transient_retention_days }]
  landing_rules   = var.landing_retention_days == null ? [] : [{ age = var.landing_retention_days, prefixes = [], noncurrent_days = null }]
  staging_rules   = [for rule in local.staging_lifecycle : { age = rule.age, prefixes = [rule.prefix], noncurrent_days = null }]

  # Staging holds second copies of uploads and transient records: no object versioning and no soft delete, so
  # a deleted or expired staged copy is gone at once (versioning kept it transient_retention_days longer,
  # soft delete another 7 days). Landing and source keep versions briefly to recover overwrites.
  core_buckets = {
    landing = { name = "${local.bucket_prefix}-dicom-landing", versioning = true, soft_delete_seconds = null, rules = concat(local.landing_rules, local.noncurrent_rule) }
    staging = { name = "${local.bucket_prefix}-dicom-staging", versioning = false, soft_delete_seconds = 0, rules = local.staging_rules }
    source  = { name = "${local.bucket_prefix}-dicom-functions-source", versioning = true, soft_delete_seconds = null, rules = local.noncurrent_rule }
  }
  export_bucket = { name = "${local.bucket_prefix}-dicom-export", versioning = true, soft_delete_seconds = null, rules = local.noncurrent_rule }
  buckets       = merge(local.core_buckets, var.enable_gcs_export ? { export = local.export_bucket } : {})

  # Alert policies per trigger (monitoring.tf). The push subscription of a trigger is named like its function,
  # and a gen2 function runs as the Cloud Run service of the same name.
  alert_definitions = merge([for k, t in local.triggers : {
    "${k}-dead-letters" = {
      display_name       = "DICOM ${k}: events dead-lettered"
      filter             = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${t.function}\" AND metric.type = \"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      denominator_filter = null
      aligner            = "ALIGN_DELTA"
      reducer            = "REDUCE_SUM"
      group_by           = "resource.labels.subscription_id"
      threshold          = 0
      duration           = "0s"
      documentation      = "Events of the ${k} trigger were dead-lettered to `${local.dead_letter_topics[k]}`: pull them from the subscription of the same name, fix the cause, and publish them again to `${t.topic}` (terraform/README.md, Triggers and dead letters)."
    }
    "${k}-backlog" = {
      display_name       = "DICOM ${k}: events waiting"
      filter             = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${t.function}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      denominator_filter = null
      aligner            = "ALIGN_MAX"
      reducer            = "REDUCE_MAX"
      group_by           = "resource.labels.subscription_id"
      threshold          = var.alert_oldest_unacked_seconds
      duration           = "300s"
      documentation      = "The oldest event of the ${k} trigger has waited more than ${var.alert_oldest_unacked_seconds} s for `${t.function}`: the function is failing, throttled or not reachable."
    }
    "${k}-errors" = {
      display_name       = "DICOM ${k}: function errors"
      filter             = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${t.function}\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      denominator_filter = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${t.function}\" AND metric.type = \"run.googleapis.com/request_count\""
      aligner            = "ALIGN_DELTA"
      reducer            = "REDUCE_SUM"
      group_by           = "resource.labels.service_name"
      threshold          = var.alert_error_ratio
      duration           = "300s"
      documentation      = "More than ${var.alert_error_ratio * 100}% of the requests to `${t.function}` failed over 5 minutes: see its logs."
    }
  }]...)
  alerts = length(var.notification_channels) > 0 ? local.alert_definitions : {}
}
