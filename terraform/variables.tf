variable "alert_error_ratio" {
  description = "Share of a function's requests that fail (HTTP 5xx) over 5 minutes above which an alert opens."
  type        = number
  default     = 0.05

  validation {
    condition     = var.alert_error_ratio > 0 && var.alert_error_ratio <= 1
    error_message = "alert_error_ratio must be in (0, 1]."
  }
}

variable "alert_oldest_unacked_seconds" {
  description = "Age of the oldest undelivered event of a trigger above which an alert opens."
  type        = number
  default     = 1800

  validation {
    condition     = var.alert_oldest_unacked_seconds >= 60
    error_message = "alert_oldest_unacked_seconds must be at least 60."
  }
}

variable "bigquery_dataset_id" {
  description = "BigQuery dataset that receives the DICOM metadata."
  type        = string
  default     = "dicom_metadata"

  validation {
    # RE2 (terraform's regex) refuses repetition counts above 1000: the length is checked apart.
    condition     = can(regex("^[A-Za-z0-9_]+$", var.bigquery_dataset_id)) && length(var.bigquery_dataset_id) <= 1024
    error_message = "bigquery_dataset_id may contain only letters, digits and underscores (at most 1024)."
  }
}

variable "bigquery_location" {
  description = "Location of the BigQuery dataset; null means var.region."
  type        = string
  default     = null
}

variable "bigquery_table_id" {
  description = "Table the export function appends to (created by the first export)."
  type        = string
  default     = "instances"

  validation {
    # RE2 (terraform's regex) refuses repetition counts above 1000: the length is checked apart.
    condition     = can(regex("^[A-Za-z0-9_]+$", var.bigquery_table_id)) && length(var.bigquery_table_id) <= 1024
    error_message = "bigquery_table_id may contain only letters, digits and underscores (at most 1024)."
  }
}

variable "dead_letter_retention_days" {
  description = "Days the application's dead-letter records (dead-letter/ in the staging bucket) are kept."
  type        = number
  default     = 90

  validation {
    condition     = var.dead_letter_retention_days >= 1
    error_message = "dead_letter_retention_days must be at least 1."
  }
}

variable "dicom_store_id" {
  description = "Name of the DICOM store."
  type        = string
  default     = "primary"

  validation {
    # The API allows ".", but the provider's IAM resources cannot parse an id that contains one.
    condition     = can(regex("^[A-Za-z0-9_-]{1,256}$", var.dicom_store_id))
    error_message = "dicom_store_id may contain only letters, digits, '_' and '-'."
  }
}

variable "enable_gcs_export" {
  description = "Create a bucket for exports of instances to Cloud Storage and let the Healthcare service agent write to it."
  type        = bool
  default     = false
}

variable "export_write_disposition" {
  description = "Write disposition of notification-driven exports (EXPORT_WRITE_DISPOSITION)."
  type        = string
  default     = "WRITE_APPEND"

  validation {
    condition     = contains(["WRITE_APPEND", "WRITE_TRUNCATE", "WRITE_EMPTY"], var.export_write_disposition)
    error_message = "export_write_disposition must be WRITE_APPEND, WRITE_TRUNCATE or WRITE_EMPTY."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy buckets that still hold objects (for test projects only)."
  type        = bool
  default     = false
}

variable "function_concurrency" {
  description = "Requests one function instance serves at once (gen2). Notifications served together share one export operation."
  type        = number
  default     = 80

  validation {
    condition     = var.function_concurrency >= 1 && var.function_concurrency <= 1000
    error_message = "function_concurrency must be between 1 and 1000."
  }
}

variable "function_max_instances" {
  description = "Maximum number of instances of each function."
  type        = number
  default     = 10

  validation {
    condition     = var.function_max_instances >= 1 && var.function_max_instances <= 1000
    error_message = "function_max_instances must be between 1 and 1000."
  }
}

variable "grant_pubsub_token_creator" {
  description = "Grant the Pub/Sub service agent roles/iam.serviceAccountTokenCreator on the push identity. Only projects created before 8 April 2021 need it for authenticated push; leave false otherwise."
  type        = bool
  default     = false
}

variable "healthcare_dataset_id" {
  description = "Name of the Cloud Healthcare dataset."
  type        = string
  default     = "dicom"

  validation {
    # The API allows ".", but the provider's IAM resources cannot parse an id that contains one.
    condition     = can(regex("^[A-Za-z0-9_-]{1,256}$", var.healthcare_dataset_id))
    error_message = "healthcare_dataset_id may contain only letters, digits, '_' and '-'."
  }
}

variable "import_storage_class" {
  description = "Storage class of imported instances (IMPORT_STORAGE_CLASS); empty means the store's default."
  type        = string
  default     = ""

  validation {
    condition     = contains(["", "STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"], var.import_storage_class)
    error_message = "import_storage_class must be empty or one of STANDARD, NEARLINE, COLDLINE, ARCHIVE."
  }
}

variable "import_suffixes" {
  description = "Object-name suffixes that are import candidates, case-insensitive (IMPORT_SUFFIXES)."
  type        = list(string)
  default     = [".dcm"]

  validation {
    condition     = length(var.import_suffixes) > 0 && alltrue([for s in var.import_suffixes : length(trimspace(s)) > 0 && !strcontains(s, ",")])
    error_message = "import_suffixes must list at least one non-empty suffix without commas."
  }
}

variable "kms_key_name" {
  description = "Optional CMEK key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for the Healthcare dataset, the buckets, the topics, the image repository and the BigQuery dataset; it must be in var.region."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be null or projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }

  # A CMEK key must sit where the data it encrypts sits: every keyed resource is in var.region (BigQuery in
  # var.bigquery_location when set).
  validation {
    condition = var.kms_key_name == null || try(
      split("/", var.kms_key_name)[3] == var.region && (var.bigquery_location == null || var.bigquery_location == var.region), false
    )
    error_message = "kms_key_name must be a key in var.region (and bigquery_location must be null or equal to region when a key is set)."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "landing_retention_days" {
  description = "Days an upload is kept in the landing bucket after it arrived; null keeps uploads until deleted."
  type        = number
  default     = null

  validation {
    condition     = var.landing_retention_days == null || try(var.landing_retention_days >= 1, false)
    error_message = "landing_retention_days must be null or at least 1."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of an event to a function (either trigger) before it goes to that trigger's dead-letter topic."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "name_prefix" {
  description = "Prefix of the bucket names (which are global); null means the project id."
  type        = string
  default     = null

  validation {
    # Bucket names have at most 63 characters; the longest is "<name_prefix>-dicom-functions-source".
    condition     = var.name_prefix == null || can(regex("^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-40 lowercase letters, digits or '-', starting and ending with a letter or digit."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/ID) the alert policies notify; empty creates no alerts."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels must be full names: projects/P/notificationChannels/ID."
  }
}

variable "operation_wait_seconds" {
  description = "How long a function waits for its long-running operation before recording it as pending (OPERATION_WAIT_SECONDS)."
  type        = number
  default     = 60

  validation {
    # The functions time out after 540 s; leave them time to record the outcome.
    condition     = var.operation_wait_seconds >= 0 && var.operation_wait_seconds <= 480
    error_message = "operation_wait_seconds must be between 0 and 480."
  }
}

variable "project_id" {
  description = "Project that hosts the pipeline."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "record_retention_days" {
  description = "Days outcome and idempotency records are kept in the staging bucket; redeliveries older than this are no longer recognised."
  type        = number
  default     = 30

  validation {
    condition     = var.record_retention_days >= 7
    error_message = "record_retention_days must be at least 7 (Pub/Sub keeps undelivered messages up to 7 days)."
  }
}

variable "region" {
  description = "Region of the buckets, the Healthcare dataset, the functions and their triggers."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a single region such as us-central1 or europe-west4."
  }
}

variable "resource_prefix" {
  description = "Prefix of the topics, functions and service accounts."
  type        = string
  default     = "dicom"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.resource_prefix))
    error_message = "resource_prefix must be 2-16 lowercase letters, digits or '-', starting with a letter (service account ids are short)."
  }
}

variable "staged_copy_retention_days" {
  description = "Days the import function's staged copies (gs://STAGING/staging/import/) are kept; an import reads them within minutes."
  type        = number
  default     = 1

  validation {
    condition     = var.staged_copy_retention_days >= 1
    error_message = "staged_copy_retention_days must be at least 1 (the lifecycle rule's smallest age)."
  }
}

variable "transient_retention_days" {
  description = "Days filter files and noncurrent object versions are kept."
  type        = number
  default     = 7

  validation {
    condition     = var.transient_retention_days >= 1
    error_message = "transient_retention_days must be at least 1."
  }
}
