#!/usr/bin/env python3
"""Compaction of a stream's small files, end to end.

    cargo build --release -p leadflow-pipeline -p leadflow-benches
    pip install duckdb
    python3 benches/compaction.py --hours 1
        # 1,000 leads/s over 6 partitions with 1 s cuts (167 leads a cut),
        # for --hours of stream time: stream_e2e writes them through the real
        # stream (mock broker, export-like leads), then `leadflow compact`
        # rewrites them. Reports files per table and day before and after,
        # the compaction's wall time and peak RSS, and DuckDB's count(*) and
        # group by country over the small files, the compacted output and
        # the same rows in one file (best of 5 each).
    python3 benches/compaction.py --data DIR
        # the same on an existing stream output (copied first)

Reports on stdout, with the machine's core count.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def files_per_dir(out: Path) -> dict:
    counts = {}
    for table in ("enriched_leads", "provider_usage", "rejects"):
        per_dir = Counter(p.parent.name for p in (out / table).glob("*/*.parquet"))
        counts[table] = dict(sorted(per_dir.items()))
    return counts


def size_mb(out: Path) -> float:
    return sum(p.stat().st_size for p in out.glob("*/*/*.parquet")) / 1e6


def timed_child(cmd) -> tuple:
    """Runs cmd; its wall seconds and the peak RSS (MB) of it alone."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{done.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, done.stderr.strip()


def best_of(con, sql: str, n: int = 5) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--target-mb", type=int, default=128)
    parser.add_argument("--config", help="a leadflow config for the stream (provider_usage too)")
    args = parser.parse_args()
    cores = os.cpu_count()
    work = TARGET / "compaction-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if args.data is None:
        leads = int(args.hours * 3600 * 1000)
        print(f"writing {leads:,} leads through the stream in cuts of 167 over 6 partitions …")
        wall, _, _ = timed_child(
            [TARGET / "stream_e2e", "--leads", str(leads), "--partitions", "6",
             *(["--config", args.config] if args.config else []),
             "--", "--batch-rows", "167", "--compact-after", "off"]
        )
        source = TARGET / "stream-e2e"
        outputs = [p for p in source.iterdir() if (p / "enriched_leads").is_dir()]
        args.data = outputs[0]
        print(f"  written in {wall:.0f} s")
    small = work / "small"
    shutil.copytree(args.data, small)
    compacted = work / "compacted"
    shutil.copytree(args.data, compacted)
    before = files_per_dir(small)
    wall, rss, summary = timed_child(
        [TARGET / "leadflow", "compact", "--data", compacted, "--target-mb", str(args.target_mb)]
    )
    after = files_per_dir(compacted)
    print(f"cores: {cores}")
    print(f"compaction: {wall:.1f} s wall, peak RSS {rss:.0f} MB: {summary}")
    for table in before:
        print(f"  {table}: files per dt before {before[table]}, after {after[table]}")
    print(f"  size: {size_mb(small):.0f} MB of small files → {size_mb(compacted):.0f} MB")

    try:
        import duckdb
    except ImportError:
        print("duckdb is not installed (pip install duckdb): no reader timings")
        return
    con = duckdb.connect()
    # One day: the dt with the most rows, as small files, compacted, and
    # the same rows in one file written by DuckDB.
    day = max(before["enriched_leads"], key=before["enriched_leads"].get)
    one = work / "one.parquet"
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{small}/enriched_leads/{day}/*.parquet')) "
        f"TO '{one}' (FORMAT parquet)"
    )
    sources = {
        "small files": f"read_parquet('{small}/enriched_leads/{day}/*.parquet')",
        "compacted": f"read_parquet('{compacted}/enriched_leads/{day}/*.parquet')",
        "one file": f"read_parquet('{one}')",
    }
    rows = {name: con.execute(f"SELECT count(*) FROM {src}").fetchone()[0] for name, src in sources.items()}
    assert len(set(rows.values())) == 1, rows
    print(f"DuckDB {duckdb.__version__}, {day}: {next(iter(rows.values())):,} rows, best of 5:")
    for label, sql in (
        ("count(*)", "SELECT count(*) FROM {src}"),
        ("group by country", "SELECT country, count(*) FROM {src} GROUP BY 1"),
        ("one lead", "SELECT * FROM {src} WHERE lead_id = (SELECT min(lead_id) FROM " + sources["one file"] + ")"),
    ):
        t = {name: best_of(con, sql.format(src=src)) for name, src in sources.items()}
        print(
            f"  {label}: small files {t['small files'] * 1000:.1f} ms, compacted "
            f"{t['compacted'] * 1000:.1f} ms, one file {t['one file'] * 1000:.1f} ms "
            f"(compacted/one = {t['compacted'] / t['one file']:.2f}x)"
        )


if __name__ == "__main__":
    main()
