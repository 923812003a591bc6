//! SQL over the lakehouse: each table as of its manifest, the analyst views, and sessions that
//! see everything or one merchant's rows.
//!
//! A table is a [`ManifestTable`]: at each scan it reads the log entries committed since the
//! last scan and plans a Parquet scan of exactly the live files, so a query sees committed files
//! only, and a compaction that commits mid-query does not disturb it (the files it replaced stay
//! until they are vacuumed well after). Filters on `event_date` are answered from the
//! manifest (partition pruning); other filters go down to the Parquet reader, which skips row
//! groups and pages by their statistics.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, BooleanArray, Date32Array};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use model::Table;
use tokio::sync::Mutex;

use crate::manifest::{Manifest, Snapshot};
use crate::rows::{event_date_field, parse_day};
use crate::scope::MerchantTable;
use crate::{LakeError, Storage};

/// A table as its manifest says it is.
#[derive(Debug)]
pub struct ManifestTable {
    manifest: Manifest,
    storage: Storage,
    snapshot: Mutex<Snapshot>,
    file_schema: SchemaRef,
    schema: SchemaRef,
}

impl ManifestTable {
    pub fn new(storage: Storage, table: Table) -> ManifestTable {
        let file_schema = model::schema::for_table(table);
        let mut fields: Vec<_> = file_schema.fields().iter().cloned().collect();
        fields.push(event_date_field());
        ManifestTable {
            manifest: Manifest::new(storage.clone(), table),
            storage,
            snapshot: Mutex::new(Snapshot::default()),
            schema: Arc::new(Schema::new(fields)),
            file_schema,
        }
    }

    async fn current(&self) -> Result<Snapshot, LakeError> {
        let mut snapshot = self.snapshot.lock().await;
        self.manifest.refresh(&mut snapshot).await?;
        Ok(snapshot.clone())
    }

    /// The days `filters` (all on `event_date`) keep, of those the table has.
    fn keep_days(
        &self,
        state: &dyn Session,
        days: BTreeSet<i32>,
        filters: &[Expr],
    ) -> DfResult<BTreeSet<i32>> {
        if filters.is_empty() || days.is_empty() {
            return Ok(days);
        }
        let partition_schema = Arc::new(Schema::new(vec![event_date_field()]));
        let column = Date32Array::from(days.iter().copied().collect::<Vec<_>>());
        let batch = RecordBatch::try_new(Arc::clone(&partition_schema), vec![Arc::new(column)])?;
        let df_schema = DFSchema::try_from(partition_schema)?;
        let mut keep = vec![true; days.len()];
        for filter in filters {
            let predicate = state.create_physical_expr(filter.clone(), &df_schema)?;
            let result = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let Some(result) = result.as_any().downcast_ref::<BooleanArray>() else {
                continue;
            };
            for (row, keep) in keep.iter_mut().enumerate() {
                *keep &= result.is_valid(row) && result.value(row);
            }
        }
        Ok(days
            .into_iter()
            .zip(keep)
            .filter_map(|(day, keep)| keep.then_some(day))
            .collect())
    }
}

/// Whether `filter` reads `event_date` alone: a partition filter, answered from the manifest
/// over day values, never over rows.
pub(crate) fn on_event_date_only(filter: &Expr) -> bool {
    expr_applicable_for_cols(&["event_date"], filter)
}

fn external(error: LakeError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

#[async_trait]
impl TableProvider for ManifestTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if on_event_date_only(filter) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let snapshot = self.current().await.map_err(external)?;
        let partition_filters: Vec<Expr> = filters
            .iter()
            .filter(|filter| on_event_date_only(filter))
            .cloned()
            .collect();
        let days: BTreeSet<i32> = snapshot
            .files
            .values()
            .filter_map(|file| parse_day(&file.event_date))
            .collect();
        let days = self.keep_days(state, days, &partition_filters)?;
        let files: Vec<PartitionedFile> = snapshot
            .files
            .values()
            .filter_map(|file| {
                let day = parse_day(&file.event_date)?;
                days.contains(&day).then(|| {
                    PartitionedFile::new(self.storage.path(&file.path).to_string(), file.bytes)
                        .with_partition_values(vec![ScalarValue::Date32(Some(day))])
                })
            })
            .collect();
        if files.is_empty() {
            let schema = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let groups = state.config().target_partitions().clamp(1, files.len());
        let mut file_groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
        for (index, file) in files.into_iter().enumerate() {
            file_groups[index % groups].push(file);
        }
        let table_schema = TableSchemaBuilder::new(Arc::clone(&self.file_schema))
            .with_table_partition_cols(vec![event_date_field()])
            .build();
        let source = Arc::new(ParquetSource::new(table_schema));
        let config = FileScanConfigBuilder::new(self.storage.url(), source)
            .with_file_groups(file_groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        ParquetFormat::default()
            .create_physical_plan(state, config)
            .await
    }
}

/// Who a session is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every row.
    All,
    /// Only rows whose `merchant_id` is this one, in every table and view, cut out inside the
    /// scan ([`crate::scope`]) so no expression of the user's sees another merchant's row.
    Merchant(String),
}

/// The analyst views, over the tables, in the order they must be created.
pub const VIEWS: &[(&str, &str)] = &[
    ("catalog", include_str!("views/catalog.sql")),
    ("order_facts", include_str!("views/order_facts.sql")),
    ("daily_sales", include_str!("views/daily_sales.sql")),
];

/// A DataFusion session over `storage` for `scope`: every table, then the views.
pub async fn session(
    storage: &Storage,
    config: SessionConfig,
    scope: &Scope,
) -> Result<SessionContext, LakeError> {
    let context = SessionContext::new_with_config(config);
    install(&context, storage, scope).await?;
    Ok(context)
}

/// Registers every table of `storage` (for `scope`), then the views, in `context`.
pub async fn install(
    context: &SessionContext,
    storage: &Storage,
    scope: &Scope,
) -> Result<(), LakeError> {
    context.register_object_store(storage.url().as_ref(), storage.store());
    crate::bounded::install(context)?;
    for table in Table::ALL {
        let provider: Arc<dyn TableProvider> = Arc::new(ManifestTable::new(storage.clone(), table));
        let provider = match scope {
            Scope::All => provider,
            Scope::Merchant(merchant) => Arc::new(MerchantTable::new(provider, merchant)?),
        };
        context.register_table(table.name(), provider)?;
    }
    for (name, sql) in VIEWS {
        context
            .sql(sql)
            .await
            .map_err(|e| LakeError::Sql(format!("creating view {name}: {e}")))?;
    }
    Ok(())
}
