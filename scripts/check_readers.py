#!/usr/bin/env python3
"""Opens a run's output with pyarrow, DuckDB and Polars and checks the types
analysts rely on. Usage: python3 scripts/check_readers.py OUT_DIR"""
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds

out = sys.argv[1] if len(sys.argv) > 1 else "out"
table = ds.dataset(f"{out}/enriched_leads", format="parquet", partitioning="hive").to_table()
schema = table.schema
assert schema.field("received_at").type == pa.timestamp("us", tz="UTC"), schema.field("received_at").type
assert schema.field("enriched_at").type == pa.timestamp("us", tz="UTC")
assert schema.field("lookup_cost_usd").type == pa.decimal128(12, 6)
assert schema.field("user_tier").type == pa.int32()
assert schema.field("phone_valid").type == pa.bool_()
print(f"pyarrow: {table.num_rows} rows, received_at {schema.field('received_at').type}")

con = duckdb.connect()
rows, valid = con.sql(
    f"select count(*), count(*) filter (where phone_valid) from read_parquet('{out}/enriched_leads/*/*.parquet', hive_partitioning = true)"
).fetchall()[0]
described = con.sql(f"describe select received_at, lookup_cost_usd, dt from read_parquet('{out}/enriched_leads/*/*.parquet', hive_partitioning = true)").fetchall()
types = {row[0]: row[1] for row in described}
assert types["received_at"] == "TIMESTAMP WITH TIME ZONE", types
assert types["lookup_cost_usd"] == "DECIMAL(12,6)", types
assert rows == table.num_rows
print(f"duckdb: {rows} rows, {valid} valid phones, types {types}")

df = pl.read_parquet(f"{out}/enriched_leads/**/*.parquet", hive_partitioning=True)
assert df.schema["received_at"] == pl.Datetime("us", "UTC"), df.schema["received_at"]
assert df.schema["lookup_cost_usd"] == pl.Decimal(12, 6), df.schema["lookup_cost_usd"]
assert df.height == rows
rejects = pl.read_parquet(f"{out}/rejects/**/*.parquet", hive_partitioning=True)
print(f"polars: {df.height} rows; rejects: {rejects.height} ({', '.join(rejects['reason'].head(2))})")

usage = ds.dataset(f"{out}/provider_usage", format="parquet", partitioning="hive").to_table()
assert usage.schema.field("cost_usd").type == pa.decimal128(12, 6)
assert usage.schema.field("started_at").type == pa.timestamp("us", tz="UTC")
assert usage.schema.field("http_status").type == pa.int32()
by_provider = con.sql(
    f"""select provider, count(*) filter (where attempt > 0) calls, count(*) filter (where outcome = 'hit') hits,
               sum(cost_usd) cost
        from read_parquet('{out}/provider_usage/*/*.parquet', hive_partitioning = true) group by 1 order by 1"""
).fetchall()
assert by_provider, "the example config calls providers"
spent = con.sql(
    f"select sum(lookup_cost_usd), count(*) filter (where lookup_status = 'found') from read_parquet('{out}/enriched_leads/*/*.parquet')"
).fetchall()[0]
# Finding phones is what the leads' lookup_cost_usd adds up to; the example's
# line-type provider (twilio, [line_type] enabled) bills per described number.
assert spent[0] == sum(row[3] for row in by_provider if row[0] != "twilio"), (spent, by_provider)
described = con.sql(
    f"select count(distinct case when phone_valid then phone_e164 else found_phone_e164 end) "
    f"from read_parquet('{out}/enriched_leads/*/*.parquet') where line_type is not null"
).fetchall()[0][0]
assert described == dict((row[0], row[1]) for row in by_provider)["twilio"], (described, by_provider)
print(f"provider_usage: {usage.num_rows} rows; {spent[1]} phones found for ${spent[0]}; {by_provider}")
