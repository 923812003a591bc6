//! Schema evolution: what a table's manifest records of its columns, and whether this build's
//! schema may follow it.
//!
//! A build may add nullable columns: files written before them are read with nulls there. Any
//! other change (a column's type, nullability tightened, a new required column, a column
//! gone) would make old files unreadable or lie about them, so the sink refuses to start and
//! says which column and why.

use datafusion::arrow::datatypes::Schema;
use model::Table;
use serde::{Deserialize, Serialize};

use crate::LakeError;

/// One column as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    /// Arrow's rendering of the type, nested fields included.
    pub data_type: String,
    pub nullable: bool,
}

/// The columns of `schema`, as recorded.
pub fn columns(schema: &Schema) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|field| Column {
            name: field.name().clone(),
            data_type: field.data_type().to_string(),
            nullable: field.is_nullable(),
        })
        .collect()
}

/// Whether files of `current` may join a table whose manifest records `recorded`. `Ok(true)`
/// when the manifest must record `current` (first commit, or new nullable columns).
pub fn check(
    table: Table,
    recorded: Option<&[Column]>,
    current: &[Column],
) -> Result<bool, LakeError> {
    let Some(recorded) = recorded else {
        return Ok(true);
    };
    if recorded == current {
        return Ok(false);
    }
    let refuse = |detail: String| {
        Err(LakeError::Schema(format!(
            "{table}: this build's schema cannot follow the one the table was written with: {detail}. \
             Only new nullable columns can be added; write the change to a new table or migrate the files"
        )))
    };
    for old in recorded {
        match current.iter().find(|column| column.name == old.name) {
            None => return refuse(format!("column {} is gone", old.name)),
            Some(new) if new.data_type != old.data_type => {
                return refuse(format!(
                    "column {} changed type from {} to {}",
                    old.name, old.data_type, new.data_type
                ));
            }
            Some(new) if old.nullable && !new.nullable => {
                return refuse(format!("column {} became required", old.name));
            }
            Some(_) => {}
        }
    }
    for new in current {
        if !recorded.iter().any(|old| old.name == new.name) && !new.nullable {
            return refuse(format!(
                "new column {} is required, but the files already written have no value for it",
                new.name
            ));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: &str, nullable: bool) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            nullable,
        }
    }

    #[test]
    fn new_nullable_columns_are_recorded_and_anything_else_is_refused() {
        let old = vec![
            column("event_id", "Utf8", false),
            column("reason", "Utf8", true),
        ];
        assert!(!check(Table::Orders, Some(&old), &old).unwrap());
        assert!(check(Table::Orders, None, &old).unwrap());
        let mut added = old.clone();
        added.push(column("coupon", "Utf8", true));
        assert!(check(Table::Orders, Some(&old), &added).unwrap());

        for (current, says) in [
            (
                vec![column("event_id", "Utf8", false)],
                "column reason is gone",
            ),
            (
                vec![
                    column("event_id", "Int64", false),
                    column("reason", "Utf8", true),
                ],
                "changed type from Utf8 to Int64",
            ),
            (
                vec![
                    column("event_id", "Utf8", false),
                    column("reason", "Utf8", false),
                ],
                "became required",
            ),
            (
                [old.clone(), vec![column("coupon", "Utf8", false)]].concat(),
                "new column coupon is required",
            ),
        ] {
            let error = check(Table::Orders, Some(&old), &current)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{error}");
            assert!(error.contains("orders"), "{error}");
        }
    }
}
