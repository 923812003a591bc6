//! A table's rows as one Parquet file (pure): zstd, row groups of a size DuckDB and Spark
//! split work by, and page statistics so readers skip what a filter rules out.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use crate::LakeError;

/// How files are encoded.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    pub row_group_rows: usize,
    pub zstd_level: i32,
}

impl Default for Encoding {
    fn default() -> Self {
        Self {
            row_group_rows: 128 * 1024,
            zstd_level: 1,
        }
    }
}

impl Encoding {
    pub fn properties(&self) -> Result<WriterProperties, LakeError> {
        let level = ZstdLevel::try_new(self.zstd_level)
            .map_err(|e| LakeError::Config(format!("zstd level {}: {e}", self.zstd_level)))?;
        let mut builder = WriterProperties::builder();
        // Unique per row: a dictionary would only fill up and be thrown away, at the cost of
        // hashing every value first.
        for column in [
            "event_id",
            "source_event_id",
            "text",
            "description",
            "order_id",
            "payment_id",
            "shipment_id",
            "refund_id",
        ] {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        Ok(builder
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("shopstream {}", env!("CARGO_PKG_VERSION")))
            .build())
    }

    /// One file holding `batches` (all of one schema), in order.
    pub fn encode(&self, batches: &[RecordBatch]) -> Result<Vec<u8>, LakeError> {
        let Some(first) = batches.first() else {
            return Err(LakeError::Parquet("no rows to write".into()));
        };
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, first.schema(), Some(self.properties()?))
            .map_err(|e| LakeError::Parquet(e.to_string()))?;
        for batch in batches {
            writer
                .write(batch)
                .map_err(|e| LakeError::Parquet(e.to_string()))?;
        }
        writer
            .close()
            .map_err(|e| LakeError::Parquet(e.to_string()))?;
        Ok(out)
    }
}
