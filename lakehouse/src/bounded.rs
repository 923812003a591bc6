//! Functions whose output size is chosen by an argument (`repeat('x', 2000000000)`, `lpad`,
//! `array_repeat`, `range`) allocate their result outside DataFusion's memory pool, so the
//! per-connection and total memory limits never see it: one statement could take the
//! process's memory. Each is replaced by a wrapper that works out, before calling the
//! built-in, how many bytes one call would produce for its batch, and refuses past
//! [`MAX_CALL_BYTES`] with a message that names the function and both sizes.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::kernels::cast::cast;
use datafusion::arrow::compute::kernels::length;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// The most one call of a size-taking function may produce for one batch.
pub const MAX_CALL_BYTES: u64 = 64 << 20;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes times n.
    Repeat,
    /// `lpad`/`rpad(text, n [, fill])`: n characters of up to 4 bytes.
    Pad,
    /// `array_repeat(element, n)`: n elements, at least 8 bytes each.
    ArrayRepeat,
    /// `range`/`generate_series([start,] stop [, step])` over integers: one 8-byte value per
    /// step.
    Series,
}

const BOUNDED: [(&str, Growth); 6] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// Replaces each size-taking built-in of `context` with its bounded wrapper.
pub fn install(context: &SessionContext) -> Result<()> {
    for (name, growth) in BOUNDED {
        let inner = context.udf(name)?;
        context.register_udf(ScalarUDF::new_from_impl(Bounded { inner, growth }));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.output_bytes(&args.args, args.number_rows)?;
        if bytes > MAX_CALL_BYTES {
            return exec_err!(
                "{} would produce {bytes} bytes in one call; a call may produce at most \
                 {MAX_CALL_BYTES} (its result is outside the query's memory limit)",
                self.inner.name()
            );
        }
        self.inner.invoke_with_args(args)
    }
}

impl Bounded {
    /// An upper bound of what one call makes for `rows` rows (1 when every argument is a
    /// scalar: the result is one scalar then).
    fn output_bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let rows = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            1
        } else {
            rows
        };
        let per_row: Vec<u64> = match self.growth {
            Growth::Repeat => {
                let (Some(text), Some(times)) = (args.first(), args.get(1)) else {
                    return Ok(0);
                };
                let lengths = integers(&byte_lengths(text, rows)?)?;
                let times = integers(&array_of(times, rows)?)?;
                lengths
                    .iter()
                    .zip(&times)
                    .map(|(length, times)| length.saturating_mul(*times))
                    .collect()
            }
            Growth::Pad | Growth::ArrayRepeat => {
                let Some(count) = args.get(1) else {
                    return Ok(0);
                };
                integers(&array_of(count, rows)?)?
                    .into_iter()
                    .map(|n| n.saturating_mul(if self.growth == Growth::Pad { 4 } else { 8 }))
                    .collect()
            }
            Growth::Series => series_lengths(args, rows)?
                .into_iter()
                .map(|n| n.saturating_mul(8))
                .collect(),
        };
        Ok(per_row.into_iter().fold(0, u64::saturating_add))
    }
}

fn array_of(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    value.to_array(rows)
}

fn byte_lengths(text: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = array_of(text, rows)?;
    Ok(length::length(&array)?)
}

/// Each row of an integer (or castable) array as a non-negative count; nulls and negatives
/// count as 0 (the functions make nothing of them). A type that is not a count gives none,
/// so the check passes it to the built-in unchanged.
fn integers(array: &ArrayRef) -> Result<Vec<u64>> {
    if !array.data_type().is_integer() {
        return Ok(vec![0; array.len()]);
    }
    let array = cast(array, &DataType::Int64)?;
    let array = array.as_primitive::<Int64Type>();
    Ok((0..array.len())
        .map(|row| {
            if array.is_null(row) {
                0
            } else {
                u64::try_from(array.value(row)).unwrap_or(0)
            }
        })
        .collect())
}

/// How many values `range`/`generate_series` make per row for integer arguments; other
/// argument types (dates, timestamps) pass through.
fn series_lengths(args: &[ColumnarValue], rows: usize) -> Result<Vec<u64>> {
    if args.is_empty() || args.iter().any(|a| !a.data_type().is_integer()) {
        return Ok(Vec::new());
    }
    let signed = |value: &ColumnarValue| -> Result<Vec<i64>> {
        let array = cast(&array_of(value, rows)?, &DataType::Int64)?;
        let array = array.as_primitive::<Int64Type>();
        Ok((0..array.len())
            .map(|row| {
                if array.is_null(row) {
                    0
                } else {
                    array.value(row)
                }
            })
            .collect())
    };
    let (start, stop, step) = match args {
        [stop] => (vec![0; rows], signed(stop)?, vec![1; rows]),
        [start, stop] => (signed(start)?, signed(stop)?, vec![1; rows]),
        [start, stop, step, ..] => (signed(start)?, signed(stop)?, signed(step)?),
        [] => return Ok(Vec::new()),
    };
    Ok(start
        .iter()
        .zip(&stop)
        .zip(&step)
        .map(|((start, stop), step)| {
            if *step == 0 {
                return 0;
            }
            let span = i128::from(*stop) - i128::from(*start);
            let count = span / i128::from(*step) + 1;
            u64::try_from(count.max(0)).unwrap_or(u64::MAX)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn answer(context: &SessionContext, sql: &str) -> Result<String> {
        let batches = context.sql(sql).await?.collect().await?;
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn size_taking_functions_refuse_results_past_the_bound_and_work_below_it() {
        let context = SessionContext::new();
        install(&context).expect("the built-ins exist");
        for (sql, small) in [
            ("SELECT length(repeat('ab', 3))", "6"),
            ("SELECT lpad('x', 4, 'y')", "yyyx"),
            ("SELECT cardinality(array_repeat(7, 3))", "3"),
            ("SELECT cardinality(range(1, 10))", "9"),
            ("SELECT cardinality(generate_series(1, 10, 3))", "4"),
            ("SELECT length(repeat('abcdefgh', 1000000))", "8000000"),
        ] {
            let shown = answer(&context, sql).await.expect(sql);
            assert!(shown.contains(small), "{sql}: {shown}");
        }
        for sql in [
            "SELECT length(repeat('ab', 1000000000))",
            "SELECT length(rpad('x', 2000000000))",
            "SELECT cardinality(array_repeat(1, 100000000))",
            "SELECT cardinality(range(0, 9000000000000000000, 1))",
            "SELECT cardinality(generate_series(100000000))",
            // Per batch: 8 MB a row is allowed alone, but ten rows make 80 MB in one call.
            "SELECT sum(length(repeat(lpad(CAST(n AS VARCHAR), 8, 'x'), 1000000))) \
             FROM generate_series(1, 10) AS t(n)",
        ] {
            let error = answer(&context, sql).await.expect_err(sql).to_string();
            assert!(error.contains("at most 67108864"), "{sql}: {error}");
        }
    }
}
