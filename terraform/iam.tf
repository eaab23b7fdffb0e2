locals {
  healthcare_agent = "serviceAccount:${google_project_service_identity.healthcare.email}"
  import_function  = "serviceAccount:${google_service_account.import_function.email}"
  export_function  = "serviceAccount:${google_service_account.export_function.email}"
  trigger          = "serviceAccount:${google_service_account.trigger.email}"

  cmek_agents = var.kms_key_name == null ? {} : {
    bigquery   = "serviceAccount:${data.google_bigquery_default_service_account.bigquery.email}"
    healthcare = local.healthcare_agent
    pubsub     = "serviceAccount:${google_project_service_identity.pubsub.email}"
    storage    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  }
}

# --- Cloud Healthcare service agent: it performs the imports and exports the functions start. ---

# dicomStores.import reads the uploaded objects from the landing bucket, and from the staging bucket the
# staged copies (a batched import lists and reads its batch's prefix) and the export filter files.
resource "google_storage_bucket_iam_member" "healthcare_agent_read" {
  for_each = toset(["landing", "staging"])

  bucket = google_storage_bucket.buckets[each.key].name
  role   = "roles/storage.objectViewer"
  member = local.healthcare_agent
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
  topic   = google_pubsub_topic.notifications.name
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

# dicomStores.import (import function) and dicomStores.export (export function) on this store only.
resource "google_healthcare_dicom_store_iam_member" "functions" {
  for_each = {
    "roles/healthcare.dicomEditor ${local.import_function}" = local.import_function
    "roles/healthcare.dicomEditor ${local.export_function}" = local.export_function
  }

  dicom_store_id = google_healthcare_dicom_store.store.id
  role           = "roles/healthcare.dicomEditor"
  member         = each.value
}

# Long-running operations live under the dataset (…/datasets/D/operations/OP), so operations.get is checked
# there; datasetViewer is the narrowest predefined role with it and grants no access to DICOM data.
resource "google_healthcare_dataset_iam_member" "functions" {
  for_each = {
    "roles/healthcare.datasetViewer ${local.import_function}" = local.import_function
    "roles/healthcare.datasetViewer ${local.export_function}" = local.export_function
  }

  dataset_id = google_healthcare_dataset.dicom.id
  role       = "roles/healthcare.datasetViewer"
  member     = each.value
}

# --- Function builds. ---

resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.buckets["source"].name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

# Project level on purpose: build logs are written to the project's log buckets, and the images go to the
# gcf-artifacts repository that the functions service creates on first deploy, so neither can be named here.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

# --- Event delivery. ---

# Project level on purpose: eventarc.events.receiveEvent is checked on the project; the role cannot be
# granted on a trigger or a function.
resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = local.trigger
}

# The trigger identity may invoke exactly the two functions' Cloud Run services.
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  for_each = {
    import = google_cloudfunctions2_function.import.service_config[0].service
    export = google_cloudfunctions2_function.export.service_config[0].service
  }

  project  = var.project_id
  location = var.region
  name     = each.value
  role     = "roles/run.invoker"
  member   = local.trigger
}

# Project level on purpose: Cloud Storage triggers publish through a topic Eventarc creates with a generated
# name, so the Cloud Storage service agent's publish grant cannot name that topic in advance.
resource "google_project_iam_member" "gcs_agent_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# The Pub/Sub service agent forwards undeliverable export messages to the dead-letter topic.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

# --- Optional CMEK: each service agent that encrypts data with the key. ---

resource "google_kms_crypto_key_iam_member" "cmek" {
  for_each = local.cmek_agents

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
