locals {
  services = toset([
    "artifactregistry.googleapis.com", # gen2 functions store their images here
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com", # gen2 functions are built by Cloud Build
    "cloudfunctions.googleapis.com",
    "cloudkms.googleapis.com",
    "eventarc.googleapis.com",
    "healthcare.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com", # gen2 functions run as Cloud Run services
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
