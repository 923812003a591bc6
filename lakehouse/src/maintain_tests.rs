//! Compaction, retention, vacuum and schema evolution on a lake written commit by commit, as
//! the sink writes it, and read through SQL. Inside the crate because it writes files as an
//! older build did (without a column added since), which only the crate's own manifest commit
//! can do.

use std::sync::Arc;

use crate::manifest::{DataFile, Entry, Manifest, Operation};
use crate::parquet::Encoding;
use crate::query::{Scope, session};
use crate::rows::{Rows, event_day, format_day};
use crate::{Storage, maintain};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, Schema};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use model::{Envelope, Table};

fn events(count: usize, start_ms: i64) -> Vec<Envelope> {
    traffic::Generator::new(traffic::GeneratorConfig {
        seed: 3,
        start_ms,
        rate: 20.0,
        products: 60,
        merchants: 4,
        customers: 300,
        daily_rhythm: false,
        ..traffic::GeneratorConfig::default()
    })
    .unwrap()
    .take(count)
    .collect()
}

/// Commits `batch` as one file of `table`, with `schema` recorded, as the sink would.
async fn commit(storage: &Storage, table: Table, batch: RecordBatch, day: i32) -> DataFile {
    let bytes = Encoding::default()
        .encode(std::slice::from_ref(&batch))
        .unwrap();
    let event_date = format_day(day);
    let file = DataFile {
        path: DataFile::fresh_path(table, &event_date),
        event_date,
        rows: batch.num_rows() as u64,
        bytes: bytes.len() as u64,
        min_event_time: 0,
        max_event_time: 0,
    };
    storage.put(&storage.path(&file.path), bytes).await.unwrap();
    let manifest = Manifest::new(storage.clone(), table);
    let mut snapshot = manifest.snapshot().await.unwrap();
    let entry = Entry {
        added: vec![file.clone()],
        schema: Some(crate::evolution::columns(&batch.schema())),
        ..Entry::new(Operation::Append)
    };
    manifest.commit(&mut snapshot, entry).await.unwrap();
    file
}

/// Commits `events`' rows of `table` as `files` files, split evenly.
async fn commit_in_files(storage: &Storage, table: Table, events: &[Envelope], files: usize) {
    for chunk in events.chunks(events.len().div_ceil(files)) {
        let mut rows = Rows::new(table).unwrap();
        for event in chunk {
            rows.push(event);
        }
        if rows.is_empty() {
            continue;
        }
        let day = event_day(chunk[0].event_time);
        commit(storage, table, rows.finish().unwrap(), day).await;
    }
}

async fn numbers(context: &SessionContext, sql: &str) -> Vec<i64> {
    let batches = context.sql(sql).await.unwrap().collect().await.unwrap();
    let batch = &batches[0];
    (0..batch.num_columns())
        .map(|c| {
            let column = datafusion::arrow::compute::cast(
                batch.column(c),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .unwrap();
            column.as_primitive::<Int64Type>().value(0)
        })
        .collect()
}

fn parquet_files(dir: &std::path::Path) -> usize {
    fn walk(dir: &std::path::Path, count: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, count);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                *count += 1;
            }
        }
    }
    let mut count = 0;
    walk(dir, &mut count);
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_under_a_running_query_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    // Midday, so every event is on one day.
    let events = events(30_000, 1_764_590_400_000);
    commit_in_files(&storage, Table::Clicks, &events, 12).await;
    let context = session(
        &storage,
        SessionConfig::new().with_batch_size(1024),
        &Scope::All,
    )
    .await
    .unwrap();
    let query = "SELECT count(*), count(DISTINCT event_id), sum(position) FROM clicks";
    let before = numbers(&context, query).await;

    // A scan planned and started before the compaction...
    let mut running = context
        .sql("SELECT event_id FROM clicks")
        .await
        .unwrap()
        .execute_stream()
        .await
        .unwrap();
    let mut seen = running.next().await.unwrap().unwrap().num_rows();

    let compacted = maintain::compact(&storage, Table::Clicks, Encoding::default(), 4, 128 << 20)
        .await
        .unwrap();
    assert_eq!((compacted.files_before, compacted.files_after), (12, 1));
    // Within the grace period nothing the running scan may open is deleted.
    assert_eq!(
        maintain::vacuum(&storage, Table::Clicks, 60_000)
            .await
            .unwrap(),
        0
    );

    // ...reads to the end from the files it planned.
    while let Some(batch) = running.next().await {
        seen += batch.unwrap().num_rows();
    }
    assert_eq!(seen as i64, before[0]);
    // A new query reads the compacted file and answers the same.
    assert_eq!(numbers(&context, query).await, before);
    assert_eq!(parquet_files(dir.path()), 13);
    // After the grace period the replaced files go.
    assert_eq!(
        maintain::vacuum(&storage, Table::Clicks, -1).await.unwrap(),
        12
    );
    assert_eq!(parquet_files(dir.path()), 1);
    assert_eq!(numbers(&context, query).await, before);
}

#[tokio::test]
async fn retention_drops_whole_old_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    // 2025-12-01 and 2025-12-03, noon.
    let old = events(2_000, 1_764_590_400_000);
    let new = events(3_000, 1_764_590_400_000 + 2 * 86_400_000);
    commit_in_files(&storage, Table::Searches, &old, 2).await;
    commit_in_files(&storage, Table::Searches, &new, 3).await;
    let new_searches = new
        .iter()
        .filter(|e| e.topic() == model::Topic::Searches)
        .count() as i64;
    let today = event_day(new[0].event_time);
    assert_eq!(
        maintain::retain(&storage, Table::Searches, 1, today)
            .await
            .unwrap(),
        2
    );
    let context = session(&storage, SessionConfig::new(), &Scope::All)
        .await
        .unwrap();
    assert_eq!(
        numbers(
            &context,
            "SELECT count(*), count(DISTINCT event_date) FROM searches"
        )
        .await,
        vec![new_searches, 1]
    );
}

#[tokio::test]
async fn old_files_without_a_new_nullable_column_read_as_null_and_compact_into_the_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let events = events(20_000, 1_764_590_400_000);
    let mut rows = Rows::new(Table::Orders).unwrap();
    for event in &events {
        rows.push(event);
    }
    let batch = rows.finish().unwrap();
    let total = batch.num_rows() as i64;
    let day = event_day(events[0].event_time);
    // An "older build" wrote these files without `previous_pincode`.
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&c| batch.schema().field(c).name() != "previous_pincode")
        .collect();
    let older = batch.project(&keep).unwrap();
    assert!(older.schema().index_of("previous_pincode").is_err());
    commit(&storage, Table::Orders, older.slice(0, 100), day).await;
    commit(
        &storage,
        Table::Orders,
        older.slice(100, older.num_rows() - 100),
        day,
    )
    .await;
    // This build adds the column back as nullable: allowed, and recorded with its next commit.
    let recorded = Manifest::new(storage.clone(), Table::Orders)
        .snapshot()
        .await
        .unwrap()
        .schema
        .unwrap();
    let current = crate::evolution::columns(&model::schema::for_table(Table::Orders));
    assert!(crate::evolution::check(Table::Orders, Some(&recorded), &current).unwrap());
    commit(&storage, Table::Orders, batch.slice(0, 50), day).await;

    let context = session(&storage, SessionConfig::new(), &Scope::All)
        .await
        .unwrap();
    let query = "SELECT count(*), count(previous_pincode), count(DISTINCT order_id) FROM orders";
    let before = numbers(&context, query).await;
    assert_eq!(before[0], total + 50);
    let with_column = batch
        .column(batch.schema().index_of("previous_pincode").unwrap())
        .slice(0, 50)
        .len()
        - batch
            .column(batch.schema().index_of("previous_pincode").unwrap())
            .slice(0, 50)
            .null_count();
    assert_eq!(before[1], with_column as i64, "old files read as null");

    maintain::compact(&storage, Table::Orders, Encoding::default(), 2, 128 << 20)
        .await
        .unwrap();
    assert_eq!(numbers(&context, query).await, before);
    let snapshot = Manifest::new(storage.clone(), Table::Orders)
        .snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.files.len(), 1);
    let file = snapshot.files.values().next().unwrap();
    let bytes = storage.get(&storage.path(&file.path)).await.unwrap();
    let reader =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap();
    let written: Arc<Schema> = reader.schema().clone();
    assert!(
        written.index_of("previous_pincode").is_ok(),
        "compaction writes this build's columns"
    );

    // A change that old files cannot follow is refused, naming the column.
    let mut changed = current.clone();
    changed
        .iter_mut()
        .find(|c| c.name == "order_id")
        .unwrap()
        .data_type = "Int64".into();
    let refused = Manifest::new(storage.clone(), Table::Orders)
        .commit(
            &mut Manifest::new(storage.clone(), Table::Orders)
                .snapshot()
                .await
                .unwrap(),
            Entry {
                schema: Some(changed),
                ..Entry::new(Operation::Append)
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("column order_id changed type from Utf8 to Int64"),
        "{refused}"
    );
}
