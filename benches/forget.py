#!/usr/bin/env python3
"""`leadflow forget` against a plain read of the files it has to rewrite.

    cargo build --release -p leadflow-pipeline -p leadflow-benches
    pip install pyarrow duckdb      # and Debian's `time` (/usr/bin/time)
    target/release/e2e --leads 10000000 --corpus export --work /tmp/fb
    python3 benches/forget.py --data /tmp/fb/out-10000000 --subjects 1000

Picks --subjects emails from the output (spread by a hash, not the first
rows), copies the output, and on the copy times:

- `forget --subjects` of them (one commit; wall and peak RSS);
- the same forget again (nothing left to erase: what finding costs);
- one absent subject.

Then reads the files the erasure rewrote (the `from` of its commit) in the
original, every column, with pyarrow (best of 3): the "plain read of only
the files that hold them" the erasure is compared with. Checks that every
other file of the copy is byte for byte the original's. Reports on stdout,
with the machine's core count.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
TABLES = ("enriched_leads", "provider_usage", "rejects")


def timed(cmd, env) -> tuple:
    """Wall seconds, peak RSS (MB, by /usr/bin/time: this process's own
    RUSAGE_CHILDREN would count the Python it was forked from), the JSON
    receipt on stdout, stderr."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{done.stderr}")
    lines = done.stderr.strip().splitlines()
    return wall, int(lines[-1]) / 1024, json.loads(done.stdout), "\n".join(lines[:-1])


def table_files(out: Path) -> dict:
    files = {}
    for table in TABLES:
        for p in sorted((out / table).glob("**/*.parquet")):
            files[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--leadflow", type=Path, default=TARGET / "leadflow")
    args = parser.parse_args()

    import duckdb
    import pyarrow.parquet as pq

    work = Path(tempfile.mkdtemp(prefix="forget-bench-"))
    try:
        emails = [
            r[0]
            for r in duckdb.sql(
                f"""select distinct lower(trim(email)) e from
                    read_parquet('{args.data}/enriched_leads/**/*.parquet')
                    where email is not null and email like '%@%' and trim(email) = email
                    order by hash(e) limit {args.subjects}"""
            ).fetchall()
        ]
        subjects = work / "subjects.csv"
        subjects.write_text("email\n" + "".join(f'"{e}"\n' for e in emails))
        config = work / "privacy.toml"
        config.write_text('[privacy]\nreceipt_key_env = "BENCH_RECEIPT_KEY"\n')
        env = dict(os.environ, BENCH_RECEIPT_KEY="bench-receipt-key-0123456789")
        env.pop("REDIS_URL", None)
        copy = work / "out"
        shutil.copytree(args.data, copy)
        before = table_files(copy)
        size = sum((copy / f).stat().st_size for f in before) / 1e6

        forget = [str(args.leadflow), "forget", "--data", str(copy), "--config", str(config)]
        wall, rss, receipt, _ = timed(forget + ["--subjects", str(subjects)], env)
        log = sorted((copy / "_leadflow/log").glob("*.json"))[-1]
        commit = json.loads(log.read_text())
        rewritten = [r["from"] for r in commit.get("rewrites", [])]
        after = table_files(copy)
        untouched = [f for f in before if f not in rewritten]
        assert all(after.get(f) == before[f] for f in untouched), "a file not rewritten changed"

        reads = []
        for _ in range(3):
            start = time.perf_counter()
            rows = sum(pq.read_table(args.data / f).num_rows for f in rewritten)
            reads.append(time.perf_counter() - start)
        read = min(reads)
        again, _, receipt_again, _ = timed(forget + ["--subjects", str(subjects)], env)
        absent, _, _, _ = timed(forget + ["--email", "nobody@nowhere.example"], env)

        cores = os.cpu_count()
        print(f"forget: {len(emails)} subjects from {args.data} ({len(before)} files, {size:.0f} MB), {cores} cores")
        print(f"  removed {receipt['rows_removed']}; rewrote {len(rewritten)} of {len(before)} files "
              f"({receipt['files_emptied']} emptied); {len(untouched)} untouched, byte for byte")
        print(f"  forget:                 {wall:6.2f} s wall, peak RSS {rss:.0f} MB")
        print(f"  plain read of the {len(rewritten)} files it rewrote (pyarrow, every column, {rows} rows): {read:6.2f} s")
        print(f"  ratio forget / plain read: {wall / read:.2f}x")
        print(f"  the same again (nothing left; files checked {receipt_again['files_checked']}): {again:6.2f} s")
        print(f"  one absent subject: {absent:6.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
