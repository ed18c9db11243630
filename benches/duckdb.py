#!/usr/bin/env python3
"""`leadflow run` side by side with DuckDB's plain CSV -> Parquet conversion.

    cargo build --release -p leadflow-pipeline -p leadflow-benches
    pip install duckdb pyarrow            # and Debian's `time` (/usr/bin/time)
    python3 benches/duckdb.py --leads 1000000                # export-like corpus
    python3 benches/duckdb.py --input other.csv              # any CSV of leads
    python3 benches/duckdb.py --foreign 1000000              # a corpus shaped
                                                             # unlike ours

On one CSV file, alternating, --repeat times each (median reported):

- duckdb: `COPY (SELECT * FROM read_csv(f)) TO … (FORMAT parquet,
  COMPRESSION zstd)` with `threads = cores`, timed inside its process
  (the interpreter and the import are not counted: DuckDB's best case);
- enrich: `leadflow run` with the default enrich.sql and no providers;
- select: `leadflow run --query FILE` of `select * from leads`;
- rewrite: DuckDB again, re-encoding enrich's own output (its Parquet,
  read back) into one zstd Parquet file with DuckDB's own settings (its
  zstd level, a dictionary and statistics for every column): about what
  DuckDB pays to write the columns leadflow writes, with enrich's
  Parquet to decode instead of a CSV to parse, and no phone work. It
  reads the output enrich left in the same round, so `--only rewrite`
  needs `--only enrich` beside it.

leadflow is timed by /usr/bin/time, whole process. Prints wall, CPU
(user + sys), peak RSS, output bytes and the ratios the speed issue names:
enrich/duckdb, select/duckdb and rewrite/duckdb, wall and CPU.

`--foreign N` writes N leads unlike the export corpus (other column names
and order, CRLF, quoted names with commas, accents and CJK, country names
instead of codes, 30% without a phone, extra free-text columns): data no
one tuned leadflow to.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"

DUCKDB = r"""
import resource, sys, time, duckdb
src, dst, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
read = f"read_parquet('{src}', hive_partitioning = false)" if src.endswith(".parquet") else f"read_csv('{src}')"
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
con.execute(f"COPY (SELECT * FROM {read}) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)")
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"{t1 - t0} {cpu} {r1.ru_maxrss}")
"""


def run_timed(cmd, env=None):
    """(wall, cpu, peak RSS MB) of a whole process, by /usr/bin/time."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M"] + [str(c) for c in cmd],
        capture_output=True, text=True, env=env,
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{done.stderr}")
    wall, user, sys_, rss = done.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(sys_), int(rss) / 1024


def duckdb_timed(src: Path, dst: Path, threads: int):
    done = subprocess.run(
        [sys.executable, "-c", DUCKDB, str(src), str(dst), str(threads)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        sys.exit(f"duckdb failed:\n{done.stderr}")
    wall, cpu, rss = done.stdout.split()
    return float(wall), float(cpu), int(rss) / 1024


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


FIRST = ["María José", "Jean-Luc", "O'Brien", "Zoë", "李", "Anh", "Søren", "Nkechi", "José, Jr.", "Ana"]
LAST = ["García-López", "Müller", "Smith", "王", "Nguyễn", "Østergaard", "Okafor", "D'Angelo", "Kowalski"]
COUNTRIES = [
    ("United States", "+1 ({a}) {b}-{c}", "{a}.{b}.{c}"),
    ("Germany", "+49 30 {b}{c}", "030 / {b} {c}"),
    ("France", "+33 6 {b2} {c2}", "06 {b2} {c2}"),
    ("United Kingdom", "+44 20 {b}{c}", "020 {b} {c}"),
    ("Brazil", "+55 11 9{b}-{c}", "(11) 9{b}-{c}"),
    ("India", "+91 98{b} {c}", "098{b}{c}"),
    ("Japan", "+81 3-{b}-{c}", "03-{b}-{c}"),
    ("Mexico", "+52 55 {b} {c}", "55 {b} {c}"),
    ("Nigeria", "+234 803 {b} {c}", "0803 {b} {c}"),
    ("Australia", "+61 4{b2} {c}", "04{b2} {c}"),
]
JUNK = ["n/a", "call me", "-", "0", "+", "12", "ext 5", "555-HELP", "??", "tel: none"]


def write_foreign(path: Path, n: int, seed: int = 7):
    """N leads shaped unlike the export corpus (see the module doc)."""
    rnd = random.Random(seed)
    with path.open("w", newline="") as f:
        f.write('Full Name,"E-mail Address",Phone Number,Country,Company Name,Website,Notes,Tier,Created\r\n')
        for i in range(n):
            name = f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"
            country, intl, natl = rnd.choice(COUNTRIES)
            digits = dict(a=rnd.randint(201, 989), b=rnd.randint(100, 999) * 10 + rnd.randint(0, 9),
                          c=rnd.randint(1000, 9999), b2=f"{rnd.randint(10, 99)} {rnd.randint(10, 99)}",
                          c2=f"{rnd.randint(10, 99)} {rnd.randint(10, 99)}")
            roll = rnd.random()
            if roll < 0.30:
                phone = ""
            elif roll < 0.36:
                phone = rnd.choice(JUNK)
            elif roll < 0.70:
                phone = intl.format(**digits)
            else:
                phone = natl.format(**digits)
            if rnd.random() < 0.05 and phone:
                phone += f" x{rnd.randint(1, 999)}"
            email = "" if rnd.random() < 0.1 else f"{name.split()[0].lower()}.{i}@example{i % 300}.org"
            company = rnd.choice(["Acme, Inc.", "Globex", "Initech GmbH", "Umbrella \"Bio\"", "Stark Ind."])
            notes = rnd.choice(["", "met at expo", "prefers email, not calls", "VIP; budget Q3", "re-engage\nnext year"])
            tier = rnd.choice(["1", "2", "3", ""])
            created = f"2026-10-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"
            fields = [name, email, phone, country, company, f"www.example{i % 300}.org", notes, tier, created]
            f.write(",".join(csv_field(v) for v in fields) + "\r\n")


def csv_field(v: str) -> str:
    if any(c in v for c in ',"\n\r'):
        return '"' + v.replace('"', '""') + '"'
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--input", type=Path, help="a CSV of leads (else the export corpus)")
    ap.add_argument("--foreign", type=int, metavar="N", help="N leads of a corpus unlike ours")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "leadflow-duckdb")
    ap.add_argument("--leadflow", type=Path, default=TARGET / "leadflow")
    ap.add_argument("--only", choices=["duckdb", "enrich", "select", "rewrite"], action="append")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count()

    if args.input:
        src = args.input.resolve()
    elif args.foreign:
        src = args.work / f"foreign-{args.foreign}.csv"
        if not src.exists():
            write_foreign(src, args.foreign)
    else:
        src = args.work / f"leads-{args.leads}-export-{args.seed}.csv"
        if not src.exists():
            subprocess.run([TARGET / "e2e", "--generate", "--leads", str(args.leads), "--corpus",
                            "export", "--seed", str(args.seed), "--work", str(args.work)], check=True)
    print(f"input: {src} ({src.stat().st_size / 1e6:.0f} MB), {cores} cores, median of {args.repeat}")

    out = args.work / "out"
    env = dict(os.environ, LEADFLOW_LOG="warn")
    # rewrite re-encodes what enrich wrote just before it.
    order = ["duckdb", "enrich", "rewrite", "select"]
    kinds = [k for k in order if k in (args.only or order)]
    if "rewrite" in kinds and "enrich" not in kinds:
        sys.exit("--only rewrite re-encodes enrich's output: add --only enrich")
    results = {k: [] for k in kinds}
    sizes = {}
    duck = args.work / "duck"
    for _ in range(args.repeat):
        for kind in kinds:
            shutil.rmtree(duck, ignore_errors=True)
            duck.mkdir(parents=True)
            dst = duck / "duck.parquet"
            if kind == "duckdb":
                results[kind].append(duckdb_timed(src, dst, cores))
                sizes[kind] = tree_bytes(dst)
                continue
            if kind == "rewrite":
                ours = out / "enriched_leads" / "**" / "*.parquet"
                results[kind].append(duckdb_timed(ours, dst, cores))
                sizes[kind] = tree_bytes(dst)
                continue
            shutil.rmtree(out, ignore_errors=True)
            cmd = [args.leadflow, "run", "--no-progress", "--input", src, "--out", out]
            if kind == "select":
                query = args.work / "select.sql"
                query.write_text("select * from leads\n")
                cmd += ["--query", query]
            results[kind].append(run_timed(cmd, env))
            sizes[kind] = tree_bytes(out / "enriched_leads")

    med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in results.items()}
    print(f"{'':8} {'wall s':>8} {'CPU s':>8} {'RSS MB':>8} {'out MB':>8}")
    for k, (wall, cpu, rss) in med.items():
        print(f"{k:8} {wall:8.2f} {cpu:8.2f} {rss:8.0f} {sizes[k] / 1e6:8.1f}")
    if "duckdb" in med:
        dw, dc, _ = med["duckdb"]
        for k in ("enrich", "select", "rewrite"):
            if k in med:
                print(f"{k}/duckdb: wall {med[k][0] / dw:.2f}x, CPU {med[k][1] / dc:.2f}x")


if __name__ == "__main__":
    main()
