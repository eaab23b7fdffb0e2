# Alert policies (settings.tf, local.alerts): per trigger, dead letters arriving, the oldest undelivered
# event's age, and the function's error ratio. None when var.notification_channels is empty.
resource "google_monitoring_alert_policy" "pipeline" {
  for_each = local.alerts

  project               = var.project_id
  display_name          = each.value.display_name
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = var.labels

  conditions {
    display_name = each.value.display_name
    condition_threshold {
      filter             = each.value.filter
      denominator_filter = each.value.denominator_filter
      comparison         = "COMPARISON_GT"
      threshold_value    = each.value.threshold
      duration           = each.value.duration

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = each.value.aligner
        cross_series_reducer = each.value.reducer
        group_by_fields      = [each.value.group_by]
      }

      dynamic "denominator_aggregations" {
        for_each = each.value.denominator_filter == null ? [] : [each.value.aligner]
        content {
          alignment_period     = "300s"
          per_series_aligner   = denominator_aggregations.value
          cross_series_reducer = each.value.reducer
          group_by_fields      = [each.value.group_by]
        }
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.apis]
}
