# Run by tests/terraform/test_evaluation.py with `terraform test` on a provider-free module made of
# terraform/settings.tf, terraform/variables.tf and outputs of every local: terraform itself evaluates the
# locals and the variable validations (plan only: nothing is created, no provider is needed).

variables {
  project_id = "dicom-test-project"
}

run "defaults" {
  command = plan

  assert {
    condition     = alltrue([for f in ["main.py", "requirements.txt", "handlers/__init__.py", "dicom_pipeline/config.py"] : contains(output.function_source_files, f)])
    error_message = "the function source lacks an entry point, handler or core module"
  }
  assert {
    condition     = alltrue([for f in output.function_source_files : f == "requirements.txt" || endswith(f, ".py")])
    error_message = "the function source holds files the functions do not import"
  }
  assert {
    condition     = alltrue([for b in values(output.buckets) : length(b.name) <= 63])
    error_message = "a bucket name is longer than 63 characters"
  }
  assert {
    condition     = alltrue([for id in values(output.account_ids) : can(regex("^[a-z]([-a-z0-9]{4,28}[a-z0-9])$", id))])
    error_message = "a service account id is invalid"
  }
  assert {
    condition     = alltrue([for r in values(output.custom_roles) : can(regex("^[a-zA-Z0-9_.]{3,64}$", r.id))])
    error_message = "a custom role id is invalid"
  }
  assert {
    condition     = output.log_view_name == "projects/dicom-test-project/locations/global/buckets/_Default/views/dicom-healthcare-dicom"
    error_message = "HEALTHCARE_LOG_VIEW must be the view's full resource name"
  }
  assert {
    condition     = output.log_view_filter == "resource.type = \"healthcare_dicom_store\""
    error_message = "the log view must show the Healthcare API's DICOM store entries"
  }
  assert {
    condition     = length(output.alerts) == 0
    error_message = "no notification channel must mean no alert policy"
  }
  # Staging: no versioning, no soft delete; a staged copy is gone after staged_copy_retention_days.
  assert {
    condition     = output.buckets.staging.versioning == false && output.buckets.staging.soft_delete_seconds == 0
    error_message = "the staging bucket keeps deleted staged copies"
  }
  assert {
    condition     = [for r in output.buckets.staging.rules : r.age if r.prefixes == ["staging/import/"]] == [1]
    error_message = "staged copies must expire after staged_copy_retention_days (1)"
  }
  assert {
    condition     = output.agent_readable_folders == ["staging/import/", "filters/export/"]
    error_message = "the Healthcare agent must read exactly the staged copies and the filter files"
  }
  assert {
    condition     = [for r in output.buckets.landing.rules : r if r.age != null] == []
    error_message = "landing uploads must be kept when landing_retention_days is null"
  }
}

run "longest_name_prefix_fits_bucket_names" {
  command = plan
  variables {
    name_prefix = "a234567890123456789012345678901234567890" # 40 characters
  }
  assert {
    condition     = max([for b in values(output.buckets) : length(b.name)]...) == 63
    error_message = "the longest allowed name_prefix must give a 63-character bucket name"
  }
}

run "name_prefix_too_long_for_a_bucket_name" {
  command = plan
  variables {
    name_prefix = "a2345678901234567890123456789012345678901" # 41: "-dicom-functions-source" would make 64
  }
  expect_failures = [var.name_prefix]
}

run "dataset_id_with_a_dot" {
  command = plan
  variables {
    healthcare_dataset_id = "dicom.v1"
  }
  expect_failures = [var.healthcare_dataset_id]
}

run "store_id_with_a_dot" {
  command = plan
  variables {
    dicom_store_id = "primary.v1"
  }
  expect_failures = [var.dicom_store_id]
}

run "regions_with_two_digit_numbers" {
  command = plan
  variables {
    region = "europe-west10"
  }
  assert {
    condition     = output.log_view_name != ""
    error_message = "europe-west10 must be accepted"
  }
}

run "region_europe_west12" {
  command = plan
  variables {
    region = "europe-west12"
  }
  assert {
    condition     = output.log_view_name != ""
    error_message = "europe-west12 must be accepted"
  }
}

run "multi_region_is_refused" {
  command = plan
  variables {
    region = "us"
  }
  expect_failures = [var.region]
}

run "cmek_key_in_the_region" {
  command = plan
  variables {
    region       = "europe-west4"
    kms_key_name = "projects/keys-project/locations/europe-west4/keyRings/dicom/cryptoKeys/dicom"
  }
  assert {
    condition     = output.buckets.landing.name == "dicom-test-project-dicom-landing"
    error_message = "a key in the region must be accepted"
  }
}

run "cmek_key_elsewhere" {
  command = plan
  variables {
    region       = "europe-west4"
    kms_key_name = "projects/keys-project/locations/us-central1/keyRings/dicom/cryptoKeys/dicom"
  }
  expect_failures = [var.kms_key_name]
}

run "cmek_key_with_bigquery_elsewhere" {
  command = plan
  variables {
    region            = "europe-west4"
    bigquery_location = "EU"
    kms_key_name      = "projects/keys-project/locations/europe-west4/keyRings/dicom/cryptoKeys/dicom"
  }
  expect_failures = [var.kms_key_name]
}

run "long_bigquery_ids_are_accepted" {
  command = plan
  variables {
    bigquery_dataset_id = "dicom_metadata_of_the_imaging_department"
  }
  assert {
    condition     = output.log_view_name != ""
    error_message = "a valid BigQuery dataset id must be accepted"
  }
}

run "landing_retention" {
  command = plan
  variables {
    landing_retention_days = 30
  }
  assert {
    condition     = [for r in output.buckets.landing.rules : r.age if r.age != null] == [30]
    error_message = "landing_retention_days must expire uploads"
  }
}

run "alerts_for_both_triggers" {
  command = plan
  variables {
    notification_channels = ["projects/dicom-test-project/notificationChannels/123"]
    resource_prefix       = "dicom-prod"
  }
  assert {
    condition     = toset(keys(output.alerts)) == toset(["import-dead-letters", "export-dead-letters", "import-backlog", "export-backlog", "import-errors", "export-errors"])
    error_message = "each trigger needs dead-letter, backlog and error alerts"
  }
  assert {
    condition     = strcontains(output.alerts["import-dead-letters"].filter, "subscription_id = \"dicom-prod-import\"")
    error_message = "the import dead-letter alert must watch the import trigger's subscription"
  }
  assert {
    condition     = alltrue([for r in values(output.custom_roles) : can(regex("^[a-zA-Z0-9_.]{3,64}$", r.id))])
    error_message = "a custom role id made from a prefix with '-' is invalid"
  }
}

run "notification_channel_must_be_a_full_name" {
  command = plan
  variables {
    notification_channels = ["123"]
  }
  expect_failures = [var.notification_channels]
}
