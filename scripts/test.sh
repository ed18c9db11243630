#!/usr/bin/env bash
# Runs the whole test suite. Starts the services the tests talk to when none
# answers (an S3-compatible server from moto, Redis), installing them if it must,
# and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

export S3_ENDPOINT="${S3_ENDPOINT:-http://127.0.0.1:5055}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

started=()
cleanup() { for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

answers() { # host port
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PY
}
wait_for() { # host port what
  for _ in $(seq 1 100); do answers "$1" "$2" && return 0; sleep 0.2; done
  echo "test.sh: $3 did not start on $1:$2" >&2; exit 1
}

# S3: moto's server, unless something already answers at S3_ENDPOINT.
s3_host=$(python3 -c "import urllib.parse,sys; u=urllib.parse.urlparse(sys.argv[1]); print(u.hostname, u.port or 80)" "$S3_ENDPOINT")
read -r s3h s3p <<<"$s3_host"
if ! answers "$s3h" "$s3p"; then
  python3 -c "import moto.server" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
  python3 -m moto.server -H "$s3h" -p "$s3p" >"${TMPDIR:-/tmp}/leadflow-moto.log" 2>&1 &
  started+=($!)
  wait_for "$s3h" "$s3p" "moto (S3)"
fi

# The S3 tests sign requests with these; they go to S3_ENDPOINT only.
export AWS_ENDPOINT_URL="$S3_ENDPOINT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

# Redis, unless one answers at REDIS_URL. The outage tests start and kill
# redis-servers of their own, so the binary is needed either way.
if ! command -v redis-server >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
fi
redis_host=$(python3 -c "import urllib.parse,sys; u=urllib.parse.urlparse(sys.argv[1]); print(u.hostname, u.port or 6379)" "$REDIS_URL")
read -r rh rp <<<"$redis_host"
if ! answers "$rh" "$rp"; then
  redis-server --port "$rp" --bind "$rh" --save "" --appendonly no >"${TMPDIR:-/tmp}/leadflow-redis.log" 2>&1 &
  started+=($!)
  wait_for "$rh" "$rp" "redis-server"
fi

# The report's test opens it in a real headless Chromium (Debian's package).
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
fi

# The bundled example through the real binary and the provider waterfall (the
# in-process sandbox), read back by pyarrow, DuckDB and Polars, and by the
# example notebook (executed with nbclient, so it cannot rot).
python3 -c "import duckdb, polars, pyarrow, nbclient, ipykernel, matplotlib" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check duckdb polars pyarrow nbclient ipykernel matplotlib
readers_out=$(mktemp -d)
# (README's first command: no services, so not the test Redis either.)
env -u REDIS_URL cargo run --release --quiet -p leadflow-pipeline -- run --no-progress --input examples/leads.csv --out "$readers_out" --config examples/leadflow.toml
python3 scripts/check_readers.py "$readers_out"
python3 scripts/run_notebook.py examples/analyze.ipynb "$readers_out"
rm -rf "$readers_out"

cargo test --release --workspace "$@"

# leadflow serve against its OpenAPI document, with schemathesis (PyPI).
scripts/check_openapi.sh "${CARGO_TARGET_DIR:-target}/release/leadflow"
