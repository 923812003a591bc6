//! jobs: batch work over the lakehouse with polars and DataFusion. It will own merchant
//! rollups, finance exports (Parquet and XLSX per merchant and period, invoices with GST) and
//! low-stock alerts. Nothing is implemented yet.
