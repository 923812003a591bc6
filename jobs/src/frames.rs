//! One table's rows for one merchant and an event-time range, as a DataFrame, read from the
//! files the lake's newest snapshot names (the only I/O the finance job does on the lake).
//!
//! Timestamps arrive as Int64 UTC milliseconds, so every later step compares plain numbers.
//! A file written before a column existed (the lake only ever adds nullable columns) reads
//! as nulls there.

use std::io::Cursor;
use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, TimeUnit};
use model::Table;
use polars::prelude::*;
use runtime::lake::LakeFiles;

use crate::JobError;

/// Rows of `table` with `merchant_id = merchant` and `from_ms <= event_time < to_ms`, with
/// `columns` (plus `event_time`) in that order.
pub async fn read(
    lake: &dyn LakeFiles,
    table: Table,
    columns: &[&str],
    merchant: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<DataFrame, JobError> {
    let columns: Arc<Vec<String>> = Arc::new(columns.iter().map(|c| (*c).to_owned()).collect());
    let merchant: Arc<str> = Arc::from(merchant);
    let decode_one = |bytes: Vec<u8>| {
        let (columns, merchant) = (Arc::clone(&columns), Arc::clone(&merchant));
        runtime::cpu::run(move || decode(table, &columns, &[bytes], &merchant, from_ms, to_ms))
    };
    // One file at a time: only its bytes and the merchant's rows of it are held at once.
    let mut out = decode_one(Vec::new()).await??;
    for file in lake.files(table).await? {
        if file.max_event_time >= from_ms && file.min_event_time < to_ms {
            let bytes = lake.read(&file.path).await?;
            out.vstack_mut_owned(decode_one(bytes).await??)?;
        }
    }
    Ok(out)
}

/// Decodes and filters files already read (pure apart from the CPU it burns).
pub fn decode(
    table: Table,
    columns: &[String],
    files: &[Vec<u8>],
    merchant: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<DataFrame, JobError> {
    let schema = model::schema::for_table(table);
    let mut wanted: Vec<(String, DataType, bool)> = Vec::new();
    for name in std::iter::once("event_time").chain(columns.iter().map(String::as_str)) {
        let field = schema.field_with_name(name).map_err(|_| {
            JobError::Invalid(format!(
                "{table} has no column {name:?} in this build's schema"
            ))
        })?;
        let (dtype, timestamp) = polars_type(field.data_type()).ok_or_else(|| {
            JobError::Invalid(format!("{table}.{name} has a type the jobs do not read"))
        })?;
        if !wanted.iter().any(|(existing, ..)| existing == name) {
            wanted.push((name.to_owned(), dtype, timestamp));
        }
    }
    let mut out = empty(&wanted)?;
    for bytes in files.iter().filter(|bytes| !bytes.is_empty()) {
        let mut reader = ParquetReader::new(Cursor::new(bytes.as_slice()));
        let present = reader.schema()?;
        let mut read: Vec<String> = vec!["merchant_id".to_owned()];
        read.extend(
            wanted
                .iter()
                .map(|(name, ..)| name.clone())
                .filter(|name| present.get(name.as_str()).is_some()),
        );
        let frame = reader.with_columns(Some(read)).finish()?;
        let height = frame.height();
        let mut frame = frame.lazy();
        let mut casts = Vec::new();
        for (name, dtype, timestamp) in &wanted {
            if present.get(name.as_str()).is_none() {
                casts.push(lit(NULL).cast(dtype.clone()).alias(name.as_str()));
            } else if *timestamp {
                casts.push(col(name.as_str()).cast(DataType::Int64));
            }
        }
        if !casts.is_empty() {
            frame = frame.with_columns(casts);
        }
        let selected: Vec<Expr> = wanted.iter().map(|(name, ..)| col(name.as_str())).collect();
        let frame = frame
            .filter(
                col("merchant_id")
                    .eq(lit(merchant))
                    .and(col("event_time").gt_eq(lit(from_ms)))
                    .and(col("event_time").lt(lit(to_ms))),
            )
            .select(selected)
            .collect()?;
        debug_assert!(frame.height() <= height);
        out.vstack_mut_owned(frame)?;
    }
    Ok(out)
}

fn empty(wanted: &[(String, DataType, bool)]) -> Result<DataFrame, JobError> {
    let columns = wanted
        .iter()
        .map(|(name, dtype, _)| Column::new_empty(name.as_str().into(), dtype))
        .collect();
    Ok(DataFrame::new_infer_height(columns)?)
}

/// The polars type a column is read as, and whether it is a timestamp (read as Int64 ms).
fn polars_type(arrow: &ArrowType) -> Option<(DataType, bool)> {
    Some(match arrow {
        ArrowType::Utf8 => (DataType::String, false),
        ArrowType::Int64 => (DataType::Int64, false),
        ArrowType::UInt32 => (DataType::UInt32, false),
        ArrowType::UInt16 => (DataType::UInt16, false),
        ArrowType::Timestamp(TimeUnit::Millisecond, _) => (DataType::Int64, true),
        _ => return None,
    })
}
