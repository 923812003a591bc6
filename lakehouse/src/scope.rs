//! One merchant's rows of a table, cut out inside the scan.
//!
//! A merchant-scoped session must never let a user's expression see another merchant's row: a
//! cast that fails, a division by zero in a `CASE`, would quote that row's value in its error,
//! and a plain filter in a view is evaluated together with the user's predicates (in any order
//! the optimizer likes, or pushed into the Parquet reader ahead of it). So the scope is applied
//! by an operator of its own, [`MerchantScopeExec`], directly over the Parquet scan, and the
//! table accepts no filter pushdown but partition pruning on `event_date`, which only ever sees
//! day values. The operator lets nothing through it from above: no filter, projection, limit or
//! sort is pushed below it, and it reports no statistics (a `count(*)` answered from the
//! files' metadata would count every merchant).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, Scalar, StringArray};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

use crate::query::on_event_date_only;

/// `inner` with only `merchant`'s rows.
#[derive(Debug)]
pub struct MerchantTable {
    inner: Arc<dyn TableProvider>,
    merchant: String,
    merchant_column: usize,
}

impl MerchantTable {
    pub fn new(inner: Arc<dyn TableProvider>, merchant: &str) -> DfResult<MerchantTable> {
        let merchant_column = inner.schema().index_of("merchant_id")?;
        Ok(MerchantTable {
            inner,
            merchant: merchant.to_owned(),
            merchant_column,
        })
    }
}

#[async_trait]
impl TableProvider for MerchantTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
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
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(indices) => indices.clone(),
            None => (0..self.inner.schema().fields().len()).collect(),
        };
        // The scan reads what was asked for plus `merchant_id`, which the scope needs.
        let mut read = wanted.clone();
        let merchant_at = match read.iter().position(|&i| i == self.merchant_column) {
            Some(at) => at,
            None => {
                read.push(self.merchant_column);
                read.len() - 1
            }
        };
        let days: Vec<Expr> = filters
            .iter()
            .filter(|filter| on_event_date_only(filter))
            .cloned()
            .collect();
        // No limit goes down: the scan's first rows may all be another merchant's.
        let input = self.inner.scan(state, Some(&read), &days, None).await?;
        let schema = Arc::new(self.inner.schema().project(&wanted)?);
        Ok(Arc::new(MerchantScopeExec::new(
            input,
            self.merchant.clone(),
            merchant_at,
            (0..wanted.len()).collect(),
            schema,
        )))
    }
}

/// Keeps the rows of `input` whose column `merchant_at` is `merchant`, then the columns
/// `keep`.
#[derive(Debug)]
pub struct MerchantScopeExec {
    input: Arc<dyn ExecutionPlan>,
    merchant: String,
    merchant_at: usize,
    keep: Vec<usize>,
    properties: Arc<PlanProperties>,
}

impl MerchantScopeExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        merchant: String,
        merchant_at: usize,
        keep: Vec<usize>,
        schema: SchemaRef,
    ) -> MerchantScopeExec {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        MerchantScopeExec {
            input,
            merchant,
            merchant_at,
            keep,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for MerchantScopeExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MerchantScopeExec: merchant_id = {}", self.merchant)
    }
}

/// The rows of `batch` that are `merchant`'s, with the columns `keep`.
fn own_rows(
    batch: &RecordBatch,
    merchant: &Scalar<StringArray>,
    merchant_at: usize,
    keep: &[usize],
    schema: &SchemaRef,
) -> DfResult<RecordBatch> {
    let column = batch.column(merchant_at);
    let column = match column.data_type() {
        DataType::Utf8 => Arc::clone(column),
        _ => cast(column.as_ref(), &DataType::Utf8)?,
    };
    let mine = eq(&column.as_string::<i32>(), merchant)?;
    let filtered = filter_record_batch(batch, &mine)?;
    let columns = keep
        .iter()
        .map(|&index| Arc::clone(filtered.column(index)))
        .collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new()
            .with_row_count(Some(filtered.num_rows())),
    )?)
}

impl ExecutionPlan for MerchantScopeExec {
    fn name(&self) -> &str {
        "MerchantScopeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "MerchantScopeExec has exactly one input".into(),
            ));
        }
        Ok(Arc::new(MerchantScopeExec::new(
            children.swap_remove(0),
            self.merchant.clone(),
            self.merchant_at,
            self.keep.clone(),
            self.schema(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let merchant = Scalar::new(StringArray::from(vec![self.merchant.as_str()]));
        let (merchant_at, keep) = (self.merchant_at, self.keep.clone());
        let out_schema = Arc::clone(&schema);
        let rows =
            input.map(move |batch| own_rows(&batch?, &merchant, merchant_at, &keep, &out_schema));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
    }
}
