//! `shopstream sql`: one-shot queries and an interactive prompt over the lakehouse, in this
//! process (no server needed), with the endpoint's read-only rules; and `shopstream
//! sql-server`, the Postgres wire endpoint alone.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakehouse::query::Scope;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    /// The query to run; without one, an interactive prompt reads statements ending in `;`.
    query: Option<String>,
    /// See only this merchant's rows, as a merchant-scoped SQL user would.
    #[arg(long)]
    merchant: Option<String>,
    /// How rows are printed.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

/// Statements are run as the endpoint runs them: queries only.
fn options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

async fn run_one(context: &SessionContext, sql: &str, format: Format) -> Result<()> {
    if let Err(refusal) = lakehouse::pg::guard::check_sql(sql) {
        bail!("{}", refusal.message);
    }
    let batches = context
        .sql_with_options(sql, options())
        .await?
        .collect()
        .await?;
    print(&batches, format)
}

fn print(batches: &[RecordBatch], format: Format) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => writeln!(out, "{}", pretty_format_batches(batches)?)?,
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if matches!(format, Format::Table) {
        eprintln!("({rows} row{})", if rows == 1 { "" } else { "s" });
    }
    Ok(())
}

pub async fn run(config: Config, args: SqlArgs) -> Result<()> {
    let storage = config.lakehouse.storage().context(
        "shopstream sql reads the lakehouse: pass --data-dir DIR (the demo's) or set lakehouse.dir",
    )?;
    let scope = match args.merchant {
        Some(merchant) => Scope::Merchant(merchant),
        None => Scope::All,
    };
    let context = lakehouse::query::session(
        &storage,
        SessionConfig::new().with_information_schema(true),
        &scope,
    )
    .await?;
    if let Some(query) = args.query {
        return run_one(&context, &query, args.format).await;
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "shopstream sql over {:?}: end statements with `;`, `\\d` lists tables, `\\d NAME` describes one, `\\q` quits",
            storage.location()
        );
    }
    let mut statement = String::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!(
                "{}",
                if statement.is_empty() {
                    "sql> "
                } else {
                    "...> "
                }
            );
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let trimmed = line.trim();
        if statement.is_empty() {
            match trimmed {
                "" => continue,
                "\\q" | "quit" | "exit" => break,
                "\\d" => {
                    report(run_one(&context, "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name", args.format).await);
                    continue;
                }
                _ => {}
            }
            if let Some(name) = trimmed.strip_prefix("\\d ") {
                let sql = format!(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{}' ORDER BY ordinal_position",
                    name.trim().replace('\'', "''")
                );
                report(run_one(&context, &sql, args.format).await);
                continue;
            }
        }
        statement.push_str(&line);
        statement.push('\n');
        if trimmed.ends_with(';') {
            let sql = std::mem::take(&mut statement);
            report(run_one(&context, &sql, args.format).await);
        }
    }
    if !statement.trim().is_empty() {
        report(run_one(&context, &statement, args.format).await);
    }
    Ok(())
}

/// At the prompt an error is printed and the prompt goes on.
fn report(result: Result<()>) {
    if let Err(error) = result {
        eprintln!("error: {error:#}");
    }
}

/// The Postgres wire endpoint on its own, over the configured lakehouse.
pub async fn serve(config: Config) -> Result<()> {
    let storage = config.lakehouse.storage().context(
        "sql-server serves the lakehouse: pass --data-dir DIR or set lakehouse.dir / lakehouse.s3",
    )?;
    let (sql, password) = crate::config::sql_users(&config)?;
    let listener = tokio::net::TcpListener::bind(&sql.listen)
        .await
        .with_context(|| format!("cannot listen on {} (set sql.listen)", sql.listen))?;
    let address = listener.local_addr()?;
    eprintln!("SQL endpoint on {address} (Postgres wire protocol, read-only)");
    match (password, &config.data_dir) {
        (Some(password), _) => {
            eprintln!(
                "  psql 'postgresql://analyst:{password}@{address}/shopstream'  (password shown once)"
            );
        }
        (None, Some(dir)) if config.sql.users.is_empty() => eprintln!(
            "  psql 'postgresql://analyst@{address}/shopstream'  (password in {})",
            crate::config::sql_password_file(dir).display()
        ),
        (None, _) => {}
    }
    let shutdown = CancellationToken::new();
    crate::cancel_on_signal(shutdown.clone());
    lakehouse::pg::serve(sql, storage, listener, shutdown).await?;
    Ok(())
}

/// `shopstream lake ...`: look after the tables by hand.
#[derive(Debug, clap::Subcommand)]
pub enum LakeCommand {
    /// Print the committed files of a table, one path per line (for DuckDB's
    /// `read_parquet([...])` and other readers that should see only committed files).
    Files { table: String },
    /// Compact every table's small files now.
    Compact,
    /// Delete files no version names any more, once `--grace-ms` past their removal (default
    /// `lakehouse.orphan_grace_ms`).
    Vacuum {
        #[arg(long)]
        grace_ms: Option<i64>,
    },
}

pub async fn lake(config: Config, command: LakeCommand) -> Result<()> {
    let storage = config.lakehouse.storage().context(
        "shopstream lake works on the lakehouse: pass --data-dir DIR or set lakehouse.dir / lakehouse.s3",
    )?;
    match command {
        LakeCommand::Files { table } => {
            let Some(table) = model::Table::from_name(&table) else {
                let known: Vec<&str> = model::Table::ALL.iter().map(|t| t.name()).collect();
                bail!("no table {table:?}; tables: {}", known.join(", "));
            };
            let snapshot = lakehouse::manifest::Manifest::new(storage.clone(), table)
                .snapshot()
                .await?;
            let root = match storage.location() {
                lakehouse::storage::Location::Directory(dir) => dir.display().to_string(),
                lakehouse::storage::Location::S3 { bucket, prefix } => {
                    format!("s3://{bucket}/{prefix}")
                }
            };
            let mut out = std::io::stdout().lock();
            for file in snapshot.files.values() {
                // A reader that has seen enough (`| head`) is not an error.
                if writeln!(out, "{root}/{}", file.path).is_err() {
                    break;
                }
            }
        }
        LakeCommand::Compact => {
            for table in model::Table::ALL {
                let done =
                    lakehouse::maintain::compact_configured(&config.lakehouse, &storage, table)
                        .await?;
                println!(
                    "{table}: {} files -> {} ({} rewritten as {})",
                    done.files_before, done.files_after, done.rewritten, done.written
                );
            }
        }
        LakeCommand::Vacuum { grace_ms } => {
            let grace = grace_ms.unwrap_or(config.lakehouse.orphan_grace_ms);
            for table in model::Table::ALL {
                let deleted = lakehouse::maintain::vacuum(&storage, table, grace).await?;
                println!("{table}: {deleted} files deleted");
            }
        }
    }
    Ok(())
}
