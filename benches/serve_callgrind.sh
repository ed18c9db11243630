#!/usr/bin/env bash
# Instructions per lookup in `leadflow serve` (user space), counted by
# callgrind: repeatable where wall time on a shared host is not. One cached
# lead through POST /v1/lookups, as benches/serve_lookups.sh sends it;
# wrk at CONNECTIONS (default 16) for 5 s to warm up, then the counters are
# zeroed and wrk runs 20 s more. Compare two builds by running it for each.
#
#   cargo build --release -p leadflow-pipeline
#   benches/serve_callgrind.sh [PATH_TO_LEADFLOW]
set -euo pipefail
cd "$(dirname "$0")/.."
leadflow="$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/leadflow}")"
command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind) >/dev/null
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
addr="127.0.0.1:$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")"
cp benches/waterfall-0ms.toml "$work/leadflow.toml"
"$leadflow" keys new bench --org bench >>"$work/leadflow.toml" 2>"$work/key"
export LEADFLOW_BENCH_KEY=$(tail -n 1 "$work/key")
export LEADFLOW_BENCH_BODY='{"leads":[{"lead_id":"L1","full_name":"Ada Lovelace","email":"ada@example.com","company_website":"example.com","country":"GB"}]}'
env -u REDIS_URL valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$leadflow" serve --config "$work/leadflow.toml" --out "$work/out" --addr "$addr" >"$work/valgrind.out" 2>"$work/serve.log" &
pid=$!
for _ in $(seq 1 600); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.2; done
curl -sf "http://$addr/v1/lookups" -H "authorization: Bearer $LEADFLOW_BENCH_KEY" -d "$LEADFLOW_BENCH_BODY" >/dev/null
c=${CONNECTIONS:-16}
wrk -t2 -c"$c" -d5s -s benches/lookup.lua "http://$addr/v1/lookups" >/dev/null
callgrind_control -z "$pid" >/dev/null
out=$(wrk -t2 -c"$c" -d20s -s benches/lookup.lua "http://$addr/v1/lookups")
callgrind_control -d "$pid" >/dev/null
requests=$(awk '/requests in/{print $1}' <<<"$out")
instructions=$(awk '/^summary:/{print $2}' "$work/callgrind.out.1")
echo "$c connections: $requests lookups, $instructions instructions, $((instructions / requests)) a lookup"
grep Non-2xx <<<"$out" || true
