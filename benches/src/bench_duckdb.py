# DuckDB's side of `shopstream bench lake-queries`: the same queries over the same Parquet
# files (views over read_parquet with Hive partitions), two threads, median of N runs.
# Arguments: lake directory, runs, JSON list of queries. Prints [{"ms": median, "rows": n}, ...].
import json
import statistics
import sys
import time

import duckdb

lake, runs, queries = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
con.execute("SET TimeZone = 'UTC'")
import os

for table in ["orders", "order_lines", "payments", "refunds", "shipments", "searches", "clicks"]:
    if not os.path.isdir(f"{lake}/{table}"):
        continue
    con.execute(
        f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{lake}/{table}/*/*.parquet', hive_partitioning = true)"
    )
results = []
for sql in queries:
    samples, rows = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = len(con.execute(sql).fetchall())
        samples.append((time.perf_counter() - started) * 1000)
    results.append({"ms": statistics.median(samples), "rows": rows})
print(json.dumps(results))
