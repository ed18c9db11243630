#!/usr/bin/env bash
# One cached lead through `leadflow serve`'s POST /v1/lookups against a bare
# axum handler answering the same JSON (benches/src/bin/bare_axum.rs), side
# by side with wrk (Debian's package): throughput at 16, 64 and 256
# connections (CONNECTIONS="16 64 256"), then latency at about 2,000
# requests/s (16 connections, each pacing 7 ms). For serve, the requests
# each execution of the enrichment answered (lookups waiting together are
# enriched together, so this grows with the connections). For both, the
# CPU each request cost the server and wrk (user + system, µs): on cores
# that wrk and the server share, serve reaches a ratio r of bare axum's
# throughput only if serve_us <= bare_us / r + wrk_us * (1 / r - 1).
#
#   cargo build --release -p leadflow-pipeline -p leadflow-benches
#   benches/serve_lookups.sh [PATH_TO_LEADFLOW]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release"
leadflow="${1:-$bin/leadflow}"
command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
wait_up() { for _ in $(seq 1 200); do curl -s -o /dev/null "http://$1/" && return 0; sleep 0.05; done; echo "$1 did not start" >&2; exit 1; }

# The sandbox providers answering at once, limits that never bind.
cp benches/waterfall-0ms.toml "$work/leadflow.toml"
"$leadflow" keys new bench --org bench >>"$work/leadflow.toml" 2>"$work/key"
export LEADFLOW_BENCH_KEY=$(tail -n 1 "$work/key")
export LEADFLOW_BENCH_BODY='{"leads":[{"lead_id":"L1","full_name":"Ada Lovelace","email":"ada@example.com","company_website":"example.com","country":"GB"}]}'
serve_addr="127.0.0.1:$(port)"
env -u REDIS_URL "$leadflow" serve --config "$work/leadflow.toml" --out "$work/out" --addr "$serve_addr" 2>"$work/serve.log" &
pids+=($!)
serve_pid=$!
wait_up "$serve_addr"
# The first answer looks the lead up; every later one is the cache's.
curl -s "http://$serve_addr/v1/lookups" -H "authorization: Bearer $LEADFLOW_BENCH_KEY" -d "$LEADFLOW_BENCH_BODY" >/dev/null
curl -s "http://$serve_addr/v1/lookups" -H "authorization: Bearer $LEADFLOW_BENCH_KEY" -d "$LEADFLOW_BENCH_BODY" >"$work/answer.json"
bare_addr="127.0.0.1:$(port)"
"$bin/bare_axum" "$bare_addr" "$work/answer.json" &
pids+=($!)
bare_pid=$!
wait_up "$bare_addr"

echo "cores: $(nproc); answer: $(cat "$work/answer.json")"
# The requests answered and the executions that answered them, so far.
grouped() { curl -s "http://$serve_addr/metrics" | awk '/^leadflow_lookup_requests_grouped_total/{r=$2} /^leadflow_lookup_executions_total/{e=$2} END{print r+0, e+0}'; }
# A process's user + system CPU so far, in clock ticks.
ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
command -v /usr/bin/time >/dev/null || (apt-get update -qq && apt-get install -y -qq time) >/dev/null
for target in "bare axum:$bare_addr:$bare_pid" "leadflow serve:$serve_addr:$serve_pid"; do
  name=${target%%:*}; rest=${target#*:}; addr=${rest%:*}; pid=${rest##*:}
  # SERVE_ONLY=1: leadflow serve alone (comparing two of its builds).
  [ -n "${SERVE_ONLY:-}" ] && [ "$name" = "bare axum" ] && continue
  for c in ${CONNECTIONS:-16 64 256}; do
    echo "== $name, $c connections, 10 s"
    before=$(grouped)
    t0=$(ticks "$pid")
    /usr/bin/time -f '%U %S' -o "$work/wrk.cpu" \
      wrk -t2 -c"$c" -d10s --latency -s benches/lookup.lua "http://$addr/v1/lookups" >"$work/wrk.out"
    t1=$(ticks "$pid")
    grep -E "Requests/sec|50%|99%|Non-2xx" "$work/wrk.out"
    requests=$(awk '/requests in/{print $1}' "$work/wrk.out")
    awk -v r="$requests" -v s=$((t1 - t0)) -v hz="$hz" '{printf "    CPU per request: server %.1f us, wrk %.1f us\n", s / hz / r * 1e6, ($1 + $2) / r * 1e6}' "$work/wrk.cpu"
    if [ "$name" = "leadflow serve" ]; then
      read -r r0 e0 <<<"$before"; read -r r1 e1 <<<"$(grouped)"
      echo "    requests per execution: $(( (r1 - r0) / (e1 - e0 > 0 ? e1 - e0 : 1) ))"
    fi
  done
  echo "== $name, about 2,000 requests/s, 10 s"
  LEADFLOW_BENCH_DELAY_MS=7 wrk -t2 -c16 -d10s --latency -s benches/lookup.lua "http://$addr/v1/lookups" | grep -E "Requests/sec|50%|99%|Non-2xx"
done
