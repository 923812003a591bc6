//! What the SQL endpoint runs: queries, and the session chatter clients send around them.
//! Everything else is refused before planning with a message that says what was refused and
//! why, so a BI tool's user sees "read-only" rather than a planner error.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, ObjectName, Statement, TableFactor, Visit, Visitor};

/// Table functions a query may call: they compute rows, they do not read files.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest"];

/// Function names that read or list files in PostgreSQL, DuckDB or DataFusion's CLI. None is
/// registered here; refusing them by name keeps it so if a future dependency adds one.
const FILE_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "read_parquet",
    "read_csv",
    "read_csv_auto",
    "read_json",
    "read_json_auto",
    "read_avro",
    "read_text",
    "read_blob",
    "parquet_scan",
    "parquet_metadata",
    "parquet_schema",
    "glob",
];

/// Why a statement is refused: a SQLSTATE and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
}

/// `read_only_sql_transaction`: what PostgreSQL answers a write on a read-only connection.
const READ_ONLY: &str = "25006";
/// `insufficient_privilege`.
const PRIVILEGE: &str = "42501";
/// `feature_not_supported`.
const FEATURE_NOT_SUPPORTED: &str = "0A000";

/// Session settings clients send on connect or users may change; everything else (the
/// engine's `datafusion.*` settings above all: memory, spilling, threads) is the server's.
const SETTINGS: &[&str] = &[
    "statement_timeout",
    "timezone",
    "time zone",
    "datestyle",
    "intervalstyle",
    "extra_float_digits",
    "application_name",
    "search_path",
    "client_encoding",
    "bytea_output",
    "client_min_messages",
    "standard_conforming_strings",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "default_transaction_read_only",
    "transaction_isolation",
];

/// Whether a `SET`/`RESET` statement (as text) names a setting users may change.
fn check_setting(text: &str) -> Result<(), Refusal> {
    let lower = text.to_ascii_lowercase();
    let mut rest = lower.trim();
    for prefix in ["set ", "reset ", "session ", "local "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest).trim_start();
    }
    let name: String = rest
        .split(['=', ';'])
        .next()
        .unwrap_or_default()
        .split(" to ")
        .next()
        .unwrap_or_default()
        .replace(['"', '`'], "");
    let name = name.trim();
    let allowed = SETTINGS
        .iter()
        .any(|setting| name == *setting || (setting.contains(' ') && name.starts_with(setting)));
    if allowed {
        Ok(())
    } else {
        Err(Refusal {
            sqlstate: PRIVILEGE,
            message: format!(
                "setting {name:?} is fixed by the server (engine settings such as datafusion.* hold the memory and time limits); settings users may change: {}",
                SETTINGS.join(", ")
            ),
        })
    }
}

fn read_only(what: &str) -> Refusal {
    Refusal {
        sqlstate: READ_ONLY,
        message: format!(
            "shopstream SQL is read-only: {what} is not allowed. Tables are written only by the lakehouse sink; query them with SELECT"
        ),
    }
}

/// Whether every statement in `sql` may run; `Err` says why the first refused one is not.
/// Text no parser understands is let through: the planner then reports the syntax error,
/// unless it starts with a word that writes.
pub fn check_sql(sql: &str) -> Result<(), Refusal> {
    use datafusion::sql::parser::{DFParser, Statement as DfStatement};
    if let Ok(statements) = DFParser::parse_sql(sql) {
        for statement in &statements {
            match statement {
                DfStatement::Statement(statement) => check(statement)?,
                DfStatement::CreateExternalTable(_) => {
                    return Err(read_only("CREATE EXTERNAL TABLE (reading files)"));
                }
                DfStatement::CopyTo(_) => return Err(read_only("COPY (reading or writing files)")),
                DfStatement::Explain(explain) => match explain.statement.as_ref() {
                    DfStatement::Statement(statement) => check(statement)?,
                    _ => return Err(read_only("EXPLAIN of a file statement")),
                },
                DfStatement::Reset(reset) => check_setting(&reset.to_string())?,
            }
        }
        return Ok(());
    }
    if let Ok(statements) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    ) {
        return statements.iter().try_for_each(check);
    }
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    match first.as_str() {
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" | "CREATE" | "DROP" | "ALTER"
        | "COPY" | "GRANT" | "REVOKE" | "VACUUM" | "ATTACH" | "INSTALL" | "LOAD" => {
            Err(read_only(&first))
        }
        _ => Ok(()),
    }
}

/// For merchant-scoped users: `EXPLAIN` is refused, since `EXPLAIN ANALYZE` counts the rows
/// scanned before the merchant's are cut out, which would tell one merchant about the others.
/// Decided on the parsed statements (comments, whitespace and case make no difference); text
/// that no parser reads is refused when it says EXPLAIN anywhere.
pub fn check_scoped(sql: &str) -> Result<(), Refusal> {
    use datafusion::sql::parser::{DFParser, Statement as DfStatement};
    let is_explain = |statement: &Statement| matches!(statement, Statement::Explain { .. });
    let mut parsed = false;
    let mut explains = false;
    if let Ok(statements) = DFParser::parse_sql(sql) {
        parsed = true;
        explains |= statements.iter().any(|statement| match statement {
            DfStatement::Explain(_) => true,
            DfStatement::Statement(statement) => is_explain(statement),
            _ => false,
        });
    }
    if let Ok(statements) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    ) {
        parsed = true;
        explains |= statements.iter().any(is_explain);
    }
    if !parsed {
        explains = sql.to_ascii_lowercase().contains("explain");
    }
    if explains {
        return Err(Refusal {
            sqlstate: PRIVILEGE,
            message: "EXPLAIN is not available to merchant-scoped users: its figures count rows of every merchant".into(),
        });
    }
    Ok(())
}

/// Whether `statement` may run; `Err` says why not.
pub fn check(statement: &Statement) -> Result<(), Refusal> {
    match statement {
        Statement::Query(_) => check_reads(statement),
        Statement::Explain { statement, .. } => check(statement),
        Statement::Set(set) => check_setting(&set.to_string()),
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Ok(()),
        // A cursor would keep its query running (and its memory held) between statements,
        // beyond the time limit.
        Statement::Declare { .. } => Err(Refusal {
            sqlstate: FEATURE_NOT_SUPPORTED,
            message: "cursors are not supported: run the query itself (the time limit covers fetching its rows)".into(),
        }),
        Statement::Copy { .. } => Err(read_only("COPY (reading or writing files)")),
        Statement::Insert(_) => Err(read_only("INSERT")),
        Statement::Update { .. } => Err(read_only("UPDATE")),
        Statement::Delete(_) => Err(read_only("DELETE")),
        Statement::Merge { .. } => Err(read_only("MERGE")),
        Statement::Truncate { .. } => Err(read_only("TRUNCATE")),
        other => Err(read_only(&verb_of(&other.to_string()))),
    }
}

/// A query may read tables and views and call functions, but not table functions that read
/// files, nor tables named by a path.
fn check_reads(statement: &Statement) -> Result<(), Refusal> {
    struct Reads;
    impl Visitor for Reads {
        type Break = Refusal;

        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
            match factor {
                TableFactor::Table {
                    name,
                    args: Some(_),
                    ..
                }
                | TableFactor::Function { name, .. }
                    if !TABLE_FUNCTIONS.contains(&last_part(name).as_str()) =>
                {
                    return ControlFlow::Break(file_function(name));
                }
                TableFactor::Table {
                    name, args: None, ..
                } => {
                    let text = name.to_string();
                    if text.contains('/') || text.contains('\\') || looks_like_file(&text) {
                        return ControlFlow::Break(Refusal {
                            sqlstate: PRIVILEGE,
                            message: format!(
                                "{text} looks like a file path; only the lakehouse tables and views can be queried"
                            ),
                        });
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }

        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
            if let Expr::Function(function) = expr
                && FILE_FUNCTIONS.contains(&last_part(&function.name).as_str())
            {
                return ControlFlow::Break(file_function(&function.name));
            }
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Reads) {
        ControlFlow::Break(refusal) => Err(refusal),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The statement's leading keywords (`CREATE TABLE`, `DROP VIEW`, `GRANT`), for messages.
fn verb_of(text: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "CREATE",
        "DROP",
        "ALTER",
        "OR",
        "REPLACE",
        "TEMP",
        "TEMPORARY",
        "TABLE",
        "VIEW",
        "INDEX",
        "SCHEMA",
        "DATABASE",
        "FUNCTION",
        "MATERIALIZED",
        "UNIQUE",
        "GRANT",
        "REVOKE",
        "VACUUM",
        "ANALYZE",
        "ATTACH",
        "DETACH",
        "INSTALL",
        "LOAD",
        "PREPARE",
        "EXECUTE",
        "DEALLOCATE",
        "CALL",
        "COMMENT",
        "ROLE",
        "USER",
        "SEQUENCE",
        "TYPE",
        "EXTENSION",
        "RENAME",
    ];
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|word| KEYWORDS.contains(&word.to_ascii_uppercase().as_str()))
        .take(4)
        .collect();
    if words.is_empty() {
        text.split_whitespace()
            .next()
            .unwrap_or("this statement")
            .to_ascii_uppercase()
    } else {
        words.join(" ").to_ascii_uppercase()
    }
}

fn last_part(name: &ObjectName) -> String {
    name.0
        .last()
        .map(|part| part.to_string().trim_matches('"').to_ascii_lowercase())
        .unwrap_or_default()
}

fn looks_like_file(name: &str) -> bool {
    let name = name
        .trim_matches(|c| c == '\'' || c == '"')
        .to_ascii_lowercase();
    [".parquet", ".csv", ".json", ".avro", ".arrow", ".txt"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

fn file_function(name: &ObjectName) -> Refusal {
    Refusal {
        sqlstate: PRIVILEGE,
        message: format!(
            "{name} is not available: functions that read files are refused; only the lakehouse tables and views can be queried"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn verdict(sql: &str) -> Result<(), Refusal> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let parsed = check(&statements[0]);
        assert_eq!(
            check_sql(sql),
            parsed,
            "{sql}: text and parsed checks disagree"
        );
        parsed
    }

    #[test]
    fn datafusion_file_statements_are_refused() {
        for sql in [
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/tmp/x.parquet'",
            "COPY (SELECT 1) TO '/tmp/out.parquet'",
            "CREATE UNBOUNDED EXTERNAL TABLE x (a INT) STORED AS CSV LOCATION '/tmp/x.csv'",
        ] {
            let refusal = check_sql(sql).expect_err(sql);
            assert_eq!(refusal.sqlstate, READ_ONLY, "{sql}");
            assert!(refusal.message.contains("read-only"), "{sql}");
        }
        assert_eq!(
            check_sql("SELEKT 1"),
            Ok(()),
            "syntax errors are the planner's to report"
        );
        assert!(check_sql("INSERT INTO orders SELEKT 1").is_err());
        for sql in [
            "RESET datafusion.runtime.memory_limit",
            "RESET \"datafusion\".\"execution\".\"target_partitions\"",
        ] {
            let refusal = check_sql(sql).expect_err(sql);
            assert_eq!(refusal.sqlstate, PRIVILEGE, "{sql}");
        }
        assert_eq!(check_sql("RESET statement_timeout"), Ok(()));
        assert_eq!(check_sql("SET TIME ZONE 'UTC'"), Ok(()));
    }

    #[test]
    fn queries_and_session_chatter_run() {
        for sql in [
            "SELECT * FROM orders WHERE event_date = DATE '2025-12-01'",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "EXPLAIN SELECT count(*) FROM order_lines",
            "SELECT * FROM generate_series(1, 3)",
            "SET extra_float_digits = 3",
            "SET statement_timeout = '5s'",
            "SHOW server_version",
            "BEGIN",
            "COMMIT",
            "SELECT c.relname FROM pg_catalog.pg_class c",
        ] {
            assert_eq!(verdict(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn writes_ddl_copy_and_file_reads_are_refused_with_a_reason() {
        for (sql, code, says) in [
            ("INSERT INTO orders VALUES (1)", READ_ONLY, "INSERT"),
            ("UPDATE orders SET order_id = 'x'", READ_ONLY, "UPDATE"),
            ("DELETE FROM orders", READ_ONLY, "DELETE"),
            ("TRUNCATE orders", READ_ONLY, "TRUNCATE"),
            ("CREATE TABLE t (a INT)", READ_ONLY, "CREATE TABLE is"),
            (
                "CREATE TABLE stolen AS SELECT 1",
                READ_ONLY,
                "CREATE TABLE is",
            ),
            ("CREATE VIEW v AS SELECT 1", READ_ONLY, "CREATE VIEW"),
            ("DROP TABLE orders", READ_ONLY, "DROP TABLE"),
            (
                "ALTER TABLE orders ADD COLUMN x INT",
                READ_ONLY,
                "ALTER TABLE",
            ),
            ("COPY orders TO '/tmp/x.csv'", READ_ONLY, "COPY"),
            ("COPY orders FROM '/etc/passwd'", READ_ONLY, "COPY"),
            (
                "SELECT * FROM read_parquet('/etc/x.parquet')",
                PRIVILEGE,
                "read files",
            ),
            (
                "SELECT pg_read_file('/etc/passwd')",
                PRIVILEGE,
                "read files",
            ),
            ("SELECT * FROM '/etc/passwd'", PRIVILEGE, "file path"),
            ("SELECT * FROM 'data.parquet'", PRIVILEGE, "file path"),
            (
                "SET datafusion.runtime.memory_limit = '100G'",
                PRIVILEGE,
                "fixed by the server",
            ),
            ("EXPLAIN DELETE FROM orders", READ_ONLY, "DELETE"),
            (
                "SET \"datafusion\".\"runtime\".\"memory_limit\" = '1T'",
                PRIVILEGE,
                "fixed by the server",
            ),
            (
                "SET datafusion.runtime.temp_directory = '/tmp'",
                PRIVILEGE,
                "fixed by the server",
            ),
            (
                "DECLARE c CURSOR FOR SELECT 1",
                FEATURE_NOT_SUPPORTED,
                "cursors",
            ),
        ] {
            let refusal = verdict(sql).expect_err(sql);
            assert_eq!(refusal.sqlstate, code, "{sql}");
            assert!(refusal.message.contains(says), "{sql}: {}", refusal.message);
        }
    }

    #[test]
    fn scoped_users_are_refused_explain_however_it_is_written() {
        for sql in [
            "EXPLAIN SELECT 1",
            "/**/EXPLAIN ANALYZE SELECT count(*) FROM orders",
            "/* x */ explain analyze SELECT * FROM orders",
            "-- c\nEXPLAIN SELECT 1",
            "SELECT 1; EXPLAIN ANALYZE SELECT 2",
            "EXPLAIN WITH o AS (SELECT 1) SELECT * FROM o",
            "EXPLAIN SELEKT broken",
        ] {
            assert!(check_scoped(sql).is_err(), "{sql}");
        }
        for sql in [
            "SELECT 'explain' AS word",
            "SELECT * FROM orders -- explain later",
        ] {
            assert_eq!(check_scoped(sql), Ok(()), "{sql}");
        }
    }
}
