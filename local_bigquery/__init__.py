"""A local BigQuery: DuckDB warehouse files, the DICOM → BigQuery schema, and BigQuery-dialect queries."""
