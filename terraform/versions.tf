terraform {
  # Cross-variable validations (kms_key_name against region) need terraform 1.9.
  required_version = ">= 1.9"

  required_providers {
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4.0, < 3"
    }
    # Exactly the range whose lowest and highest releases tests/terraform/test_provider_schema.py checks
    # every block against (the schemas of 6.50.0 and 7.41.0).
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, <= 7.41.0"
    }
    # google_project_service_identity exists only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.50.0, <= 7.41.0"
    }
    # time_sleep: the waits the google provider's own examples use where IAM propagation is the cause.
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9.0, < 1"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
