"""Reader checks for the lakehouse, run by tests/tests/lake_sql.rs.

DuckDB, polars and pyarrow read the Parquet files straight from the lake directory and must
get the same aggregates as the Postgres wire endpoint (queried with psycopg). Then the
endpoint's refusals, time limit, memory limit and merchant scope are each checked. Any
mismatch exits non-zero with a message saying what differed.

Settings come from the environment: LAKE_DIR, PG_PORT, ANALYST_PASSWORD, MERCHANT_USER,
MERCHANT_PASSWORD, MERCHANT_ID.
"""

import os
import sys

import duckdb
import polars as pl
import psycopg
import pyarrow.compute as pc
import pyarrow.dataset as ds

LAKE = os.environ["LAKE_DIR"]
PORT = int(os.environ["PG_PORT"])


def connect(user, password):
    return psycopg.connect(
        host="127.0.0.1", port=PORT, user=user, password=password, dbname="shopstream",
        autocommit=True,
    )


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def same(what, got, want):
    if got != want:
        fail(f"{what}: got {got[:5] if isinstance(got, list) else got} ... want {want[:5] if isinstance(want, list) else want}")
    print(f"ok: {what} ({len(got) if isinstance(got, list) else got})")


analyst = connect("analyst", os.environ["ANALYST_PASSWORD"])
lines_glob = f"{LAKE}/order_lines/*/*.parquet"

# 1. Daily GMV, units and lines per merchant: endpoint vs DuckDB vs polars vs pyarrow.
endpoint = [
    tuple(row)
    for row in analyst.execute(
        "SELECT merchant_id, CAST(event_date AS VARCHAR), sum(line_total_minor), "
        "CAST(sum(quantity) AS BIGINT), count(*) FROM order_lines GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
]
if not endpoint:
    fail("the endpoint returned no order lines")
duck = [
    tuple(row)
    for row in duckdb.sql(
        f"SELECT merchant_id, CAST(event_date AS VARCHAR), sum(line_total_minor), "
        f"CAST(sum(quantity) AS BIGINT), count(*) "
        f"FROM read_parquet('{lines_glob}', hive_partitioning = true) GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
]
same("daily GMV per merchant, DuckDB", duck, endpoint)
polar = (
    pl.scan_parquet(f"{LAKE}/order_lines/**/*.parquet", hive_partitioning=True)
    .group_by("merchant_id", pl.col("event_date").cast(pl.Utf8))
    .agg(
        pl.col("line_total_minor").sum(),
        pl.col("quantity").cast(pl.Int64).sum(),
        pl.len(),
    )
    .sort("merchant_id", "event_date")
    .collect()
)
same("daily GMV per merchant, polars", [tuple(r) for r in polar.iter_rows()], endpoint)
table = ds.dataset(f"{LAKE}/order_lines", format="parquet", partitioning="hive").to_table()
same(
    "order lines and GMV, pyarrow",
    (table.num_rows, pc.sum(table["line_total_minor"]).as_py()),
    (sum(r[4] for r in endpoint), sum(r[2] for r in endpoint)),
)

# 2. Order events by type, and refunds: endpoint vs DuckDB.
for sql, table_name in [
    ("SELECT event_type, count(*) FROM {t} GROUP BY 1 ORDER BY 1", "orders"),
    ("SELECT count(*), sum(amount_minor) FROM {t}", "refunds"),
    ("SELECT count(DISTINCT session_id), count(*) FROM {t}", "clicks"),
]:
    got = [tuple(r) for r in analyst.execute(sql.format(t=table_name)).fetchall()]
    want = [
        tuple(r)
        for r in duckdb.sql(
            sql.format(t=f"read_parquet('{LAKE}/{table_name}/*/*.parquet', hive_partitioning = true)")
        ).fetchall()
    ]
    same(f"{table_name}: {sql.format(t=table_name)}", got, want)

# 3. A merchant-scoped user sees its own rows only, in tables and views alike.
merchant_id = os.environ["MERCHANT_ID"]
merchant = connect(os.environ["MERCHANT_USER"], os.environ["MERCHANT_PASSWORD"])
seen = [r[0] for r in merchant.execute("SELECT DISTINCT merchant_id FROM orders").fetchall()]
same("merchants a scoped user sees in orders", seen, [merchant_id])
seen = [r[0] for r in merchant.execute("SELECT DISTINCT merchant_id FROM daily_sales").fetchall()]
same("merchants a scoped user sees in daily_sales", seen, [merchant_id])
got = merchant.execute("SELECT count(*) FROM order_lines").fetchone()[0]
want = duckdb.sql(
    f"SELECT count(*) FROM read_parquet('{lines_glob}', hive_partitioning = true) "
    f"WHERE merchant_id = '{merchant_id}'"
).fetchall()[0][0]
same("a scoped user's order lines", got, want)

# 4. Read-only: each refused with its SQLSTATE and a message saying why.
for sql, sqlstate in [
    ("INSERT INTO orders (event_id) VALUES ('x')", "25006"),
    ("UPDATE orders SET order_id = 'x'", "25006"),
    ("DELETE FROM orders", "25006"),
    ("CREATE TABLE stolen AS SELECT * FROM orders", "25006"),
    ("DROP TABLE orders", "25006"),
    ("COPY orders TO '/tmp/orders.csv'", "25006"),
    (f"CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{LAKE}/orders'", "25006"),
    ("SELECT * FROM read_parquet('/etc/passwd')", "42501"),
    ("SELECT pg_read_file('/etc/passwd')", "42501"),
    ("SET datafusion.runtime.memory_limit = '100G'", "42501"),
    ('SET "datafusion"."runtime"."memory_limit" = \'1T\'', "42501"),
    ("RESET datafusion.runtime.memory_limit", "42501"),
    ("DECLARE c CURSOR FOR SELECT * FROM orders", "0A000"),
    ("EXPLAIN ANALYZE SELECT count(*) FROM orders", "42501"),
]:
    try:
        merchant.execute(sql)
    except psycopg.Error as error:
        if error.sqlstate != sqlstate:
            fail(f"{sql}: SQLSTATE {error.sqlstate} ({error}), want {sqlstate}")
        print(f"ok: refused {sql!r}: {error.diag.message_primary}")
    else:
        fail(f"{sql} was not refused")

# 5. The server's time and memory limits (the test configures 2 s and 32 MiB).
for sql, sqlstate in [
    ("SELECT count(*) FROM generate_series(1, 100000000000)", "57014"),
    (
        "SELECT k, count(*) FROM (SELECT v % 8000000 AS k FROM generate_series(1, 16000000) AS t(v)) "
        "GROUP BY k ORDER BY 2 DESC LIMIT 1",
        "53200",
    ),
]:
    try:
        analyst.execute(sql).fetchall()
    except psycopg.Error as error:
        if error.sqlstate != sqlstate:
            fail(f"{sql}: SQLSTATE {error.sqlstate} ({error}), want {sqlstate}")
        print(f"ok: stopped {sql!r}: {error.diag.message_primary}")
    else:
        fail(f"{sql} was not stopped")

# The connection is still usable after a refusal.
same("a query after the refusals", analyst.execute("SELECT 1").fetchone()[0], 1)

# 6. A wrong password is refused.
try:
    connect("analyst", "wrong")
except psycopg.OperationalError as error:
    print(f"ok: wrong password refused: {error}".splitlines()[0])
else:
    fail("a wrong password was accepted")
print("all reader checks passed")
