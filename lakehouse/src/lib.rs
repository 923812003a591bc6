//! lakehouse: an exactly-once Parquet sink per topic (Arrow schemas from `model::schema`),
//! a manifest log with the Kafka offsets each commit covers, compaction and retention, local
//! directory or S3-compatible storage, and SQL over it with DataFusion behind a Postgres wire
//! endpoint. Nothing is implemented yet; see the lakehouse issue.
