#!/usr/bin/env bash
# The adaptive order against the priority order on the same leads.
#
#   bash benches/adaptive/adaptive.sh [N]      (N leads of history and N new; 20000)
#
# 1. history: N leads through the priority order (what a team has today);
# 2. N new leads through `priority`, then through `adaptive` having learned
#    from 1, each into its own output: spend per found phone and phones found;
# 3. the same N new leads with ab_share = 0.5 in one run: policy_compare.
# Providers and the sandbox's segments: benches/adaptive/sandbox.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}
BIN=${LEADFLOW:-${CARGO_TARGET_DIR:-$HOME/.cache/leadflow-target}/release/leadflow}
W=$(mktemp -d /tmp/leadflow-adaptive.XXXXXX)
trap 'rm -rf "$W"' EXIT
python3 benches/adaptive/leads.py --n "$N" --seed 1 > "$W/history.csv"
python3 benches/adaptive/leads.py --n "$N" --seed 2 > "$W/new.csv"
config() { # NAME, then the [waterfall] table's lines
    local name=$1; shift
    { cat benches/adaptive/sandbox.toml; echo "[waterfall]"; printf '%s\n' "$@"; } > "$W/$name.toml"
}
config priority 'order = "priority"'
config adaptive 'order = "adaptive"' "history = \"$W/history-out\""
config ab 'order = "adaptive"' "history = \"$W/history-out\"" 'ab_share = 0.5'
run() { # CONFIG INPUT OUT
    "$BIN" run --config "$W/$1.toml" --input "$W/$2.csv" --out "$W/$3" >/dev/null 2>"$W/$3.log" \
        || { cat "$W/$3.log"; exit 1; }
}
per_found() {
    "$BIN" sql --data "$W/$1" --format csv "
        SELECT count(*) FILTER (WHERE found_phone_e164 IS NOT NULL) AS found,
               round(CAST(sum(lookup_cost_usd) AS DOUBLE), 2) AS spend_usd,
               round(CAST(sum(lookup_cost_usd) AS DOUBLE)
                     / count(*) FILTER (WHERE found_phone_e164 IS NOT NULL), 4) AS per_found_usd
        FROM enriched_leads" | tail -1
}
run priority history history-out
run priority new priority-out
t0=$(date +%s.%N)
run adaptive new adaptive-out
t1=$(date +%s.%N)
run ab new ab-out
IFS=, read -r pf ps pp <<<"$(per_found priority-out)"
IFS=, read -r af as ap <<<"$(per_found adaptive-out)"
echo "leads: $N history (priority order), $N new; $(nproc) cores"
printf '%-9s %7s %11s %15s\n' policy found spend_usd per_found_usd
printf '%-9s %7s %11s %15s\n' priority "$pf" "$ps" "$pp"
printf '%-9s %7s %11s %15s\n' adaptive "$af" "$as" "$ap"
python3 - "$pf" "$pp" "$af" "$ap" <<'PY'
import sys
pf, pp, af, ap = map(float, sys.argv[1:])
print(f"adaptive pays {100 * (1 - ap / pp):.1f}% less per found phone, finding {100 * af / pf:.1f}% as many")
PY
echo "adaptive run (learning from history included): $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
echo "one run with ab_share = 0.5 (policy_compare):"
"$BIN" sql --data "$W/ab-out" --file policy_compare
