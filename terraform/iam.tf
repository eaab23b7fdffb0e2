# Every grant, additive (*_iam_member), each as narrow as the API allows. iam_table.toml lists each call the
# code and the service agents make, the permission it needs and where; tests/terraform/test_iam_table.py
# proves every call is covered by a grant below and that no grant is unused.
locals {
  healthcare_agent = "serviceAccount:${google_project_service_identity.agents["healthcare.googleapis.com"].email}"
  pubsub_agent     = "serviceAccount:${google_project_service_identity.agents["pubsub.googleapis.com"].email}"
  gcs_agent        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  import_function  = "serviceAccount:${google_service_account.import_function.email}"
  export_function  = "serviceAccount:${google_service_account.export_function.email}"
  trigger          = "serviceAccount:${google_service_account.trigger.email}"
  build            = "serviceAccount:${google_service_account.build.email}"
  function_members = { import = local.import_function, export = local.export_function }

  cmek_agents = var.kms_key_name == null ? {} : {
    artifactregistry = "serviceAccount:${google_project_service_identity.agents["artifactregistry.googleapis.com"].email}"
    bigquery         = "serviceAccount:${data.google_bigquery_default_service_account.bigquery.email}"
    healthcare       = local.healthcare_agent
    pubsub           = local.pubsub_agent
    storage          = local.gcs_agent
  }
}

# --- Cloud Healthcare service agent: it performs the imports and exports the functions start. ---

# dicomStores.import reads the uploads in the landing bucket.
resource "google_storage_bucket_iam_member" "healthcare_agent_landing" {
  bucket = google_storage_bucket.buckets["landing"].name
  role   = "roles/storage.objectViewer"
  member = local.healthcare_agent
}

moved {
  from = google_storage_bucket_iam_member.healthcare_agent_read["landing"]
  to   = google_storage_bucket_iam_member.healthcare_agent_landing
}

# …and, of the staging bucket, only the staged copies (a batched import lists and reads its batch's prefix)
# and the export filter files: outcome records and dead letters stay out of its reach.
resource "google_storage_managed_folder_iam_member" "healthcare_agent_staging" {
  for_each = google_storage_managed_folder.agent_readable

  bucket         = each.value.bucket
  managed_folder = each.value.name
  role           = "roles/storage.objectViewer"
  member         = local.healthcare_agent
}

# Exports to Cloud Storage overwrite existing objects, which objectCreator does not allow.
resource "google_storage_bucket_iam_member" "healthcare_agent_export" {
  count = var.enable_gcs_export ? 1 : 0

  bucket = google_storage_bucket.buckets["export"].name
  role   = "roles/storage.objectAdmin"
  member = local.healthcare_agent
}

resource "google_bigquery_dataset_iam_member" "healthcare_agent" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.dicom.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = local.healthcare_agent
}

# Project level on purpose: BigQuery jobs belong to a project, and bigquery.jobs.create cannot be granted on
# anything narrower. jobUser only lets the agent run jobs; what it can read or write is still limited to the
# dataset grant above.
resource "google_project_iam_member" "healthcare_agent_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.healthcare_agent
}

resource "google_pubsub_topic_iam_member" "healthcare_agent_notifications" {
  project = var.project_id
  topic   = google_pubsub_topic.trigger["export"].name
  role    = "roles/pubsub.publisher"
  member  = local.healthcare_agent
}

# --- Function identities. ---

resource "google_storage_bucket_iam_member" "import_function" {
  for_each = {
    "landing roles/storage.objectViewer" = { bucket = "landing", role = "roles/storage.objectViewer" } # preamble check, copy source
    "staging roles/storage.objectUser"   = { bucket = "staging", role = "roles/storage.objectUser" }   # staged copies, outcome records, dead letters
  }

  bucket = google_storage_bucket.buckets[each.value.bucket].name
  role   = each.value.role
  member = local.import_function
}

resource "google_storage_bucket_iam_member" "export_function" {
  for_each = {
    "staging roles/storage.objectUser" = { bucket = "staging", role = "roles/storage.objectUser" } # filter files, idempotency claims, dead letters
  }

  bucket = google_storage_bucket.buckets[each.value.bucket].name
  role   = each.value.role
  member = local.export_function
}

# Custom roles holding exactly what the functions' code calls (settings.tf, local.custom_roles): predefined
# roles such as dicomEditor would also read, write and delete every instance.
resource "google_project_iam_custom_role" "functions" {
  for_each = local.custom_roles

  project     = var.project_id
  role_id     = each.value.id
  title       = each.value.title
  permissions = each.value.permissions

  depends_on = [google_project_service.apis]
}

# dicomStores.import (import function) and dicomStores.export (export function) on this store only.
resource "google_healthcare_dicom_store_iam_member" "functions" {
  for_each = local.function_members

  dicom_store_id = google_healthcare_dicom_store.store.id
  role           = google_project_iam_custom_role.functions[each.key].name
  member         = each.value
}

# Long-running operations live under the dataset (…/datasets/D/operations/OP), so operations.get is checked
# there; the role holds nothing else.
resource "google_healthcare_dataset_iam_member" "functions" {
  for_each = local.function_members

  dataset_id = google_healthcare_dataset.dicom.id
  role       = google_project_iam_custom_role.functions["operations"].name
  member     = each.value
}

# Project level on purpose: a log view's access is granted through a project-level viewAccessor binding
# conditioned on the view's name (Logging's documented way); the condition limits it to this one view.
resource "google_project_iam_member" "functions_log_view" {
  for_each = local.function_members

  project = var.project_id
  role    = "roles/logging.viewAccessor"
  member  = each.value

  condition {
    title      = "${var.resource_prefix}-healthcare-log-view"
    expression = "resource.name == \"${local.log_view_name}\""
  }
}

resource "time_sleep" "function_grants" {
  create_duration = "60s"

  depends_on = [
    google_storage_bucket_iam_member.import_function,
    google_storage_bucket_iam_member.export_function,
    google_healthcare_dicom_store_iam_member.functions,
    google_healthcare_dataset_iam_member.functions,
    google_project_iam_member.functions_log_view,
  ]
}

# --- Function builds. ---

resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.buckets["source"].name
  role   = "roles/storage.objectViewer"
  member = local.build
}

# Project level on purpose: the functions service copies the source into its own staging bucket
# gcf-v2-sources-PROJECT_NUMBER-REGION, created on the first deploy (so it cannot be named as a resource here);
# Google's "building" page grants a custom build identity objectViewer there, conditioned on that bucket.
resource "google_project_iam_member" "build_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = local.build

  condition {
    title      = "${var.resource_prefix}-gcf-v2-sources"
    expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}\")"
  }
}

# Project level on purpose: build logs are written to the project's log buckets (logging.logEntries.create is
# checked on the project).
resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build
}

moved {
  from = google_project_iam_member.build["roles/logging.logWriter"]
  to   = google_project_iam_member.build_logs
}

resource "google_artifact_registry_repository_iam_member" "build" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = local.build
}

# --- Event delivery: landing bucket → topic → push → function; notifications → push → function. ---

# The Cloud Storage service agent publishes the landing bucket's notifications to our topic.
resource "google_pubsub_topic_iam_member" "gcs_agent_landing_events" {
  project = var.project_id
  topic   = google_pubsub_topic.trigger["import"].name
  role    = "roles/pubsub.publisher"
  member  = local.gcs_agent
}

# The push identity may invoke exactly the two functions' Cloud Run services.
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  for_each = google_cloudfunctions2_function.functions

  project  = var.project_id
  location = var.region
  name     = each.value.service_config[0].service
  role     = "roles/run.invoker"
  member   = local.trigger
}

# The Pub/Sub service agent forwards undeliverable events to each trigger's dead-letter topic…
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  for_each = google_pubsub_topic.dead_letter

  project = var.project_id
  topic   = each.value.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

# …and acks the forwarded message on the trigger's subscription.
resource "google_pubsub_subscription_iam_member" "pubsub_agent_trigger" {
  for_each = google_pubsub_subscription.trigger

  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Projects created before 8 April 2021 only: their Pub/Sub service agent needs this to mint the push
# identity's OIDC tokens (var.grant_pubsub_token_creator). On the push identity only, not the project.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  count = var.grant_pubsub_token_creator ? 1 : 0

  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "time_sleep" "trigger_grants" {
  create_duration = "60s"

  depends_on = [
    google_cloud_run_v2_service_iam_member.trigger_invoker,
    google_pubsub_topic_iam_member.pubsub_agent_dead_letter,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# --- Optional CMEK: each service agent that encrypts data with the key. ---

resource "google_kms_crypto_key_iam_member" "cmek" {
  for_each = local.cmek_agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
