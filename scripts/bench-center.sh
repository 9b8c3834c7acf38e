#!/usr/bin/env bash
# Benchmarks the center in one run, either against the legacy center (../shared/reference), or
# the stores against each other.
#
# Usage: scripts/bench-center.sh [--seconds N] [--conns N] [--pg "host=127.0.0.1 user=postgres dbname=test"]
#            [--instances N] [--no-sqlite] [--no-normal] [--race-conns N] [--race-rounds N] [--race-hot N]
#        scripts/bench-center.sh --store pg [--instances N] [--rounds N] [--seconds N] [--conns N] [--pg "..."]
#
# The first form measures the center (SQLite, and PostgreSQL with --pg, on N instances of one schema
# with --instances N) beside the legacy center; PROTO_VENV and PROTO_PORT choose the legacy center's
# virtualenv (created on first use) and port. The second prints the store comparison: durable /v1
# reports/s and latency for one center on SQLite (synchronous=full), one on PostgreSQL, and N
# (default 2) on one PostgreSQL schema with the load split, --rounds times in turn (default 2).
# Every other option goes to crates/center/examples/loadgen/main.rs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
reference="$here/../shared/reference"
venv="${PROTO_VENV:-${CARGO_TARGET_DIR:-$here/target}/proto-venv}"
port="${PROTO_PORT:-18080}"
default_pg="host=127.0.0.1 port=5432 user=postgres dbname=test"

store=""
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
        --store) store="$2"; shift 2 ;;
        *) pass+=("$1"); shift ;;
    esac
done

cargo build --release -p hedge-center --example loadgen
target_dir="${CARGO_TARGET_DIR:-$here/target}"
loadgen="$target_dir/release/examples/loadgen"

case "$store" in
    "") ;;
    pg|postgres)
        has() { for a in "${pass[@]}"; do [ "$a" = "$1" ] && return 0; done; return 1; }
        extra=()
        has --pg || extra+=(--pg "$default_pg")
        has --conns || extra+=(--conns 32)
        has --rounds || extra+=(--rounds 2)
        echo "load: $(uptime)"
        "$loadgen" --compare-stores "${extra[@]}" "${pass[@]}"
        echo "load: $(uptime)"
        exit 0
        ;;
    *) echo "--store takes pg" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$reference/requirements.txt"
fi

"$venv/bin/python" "$reference/prototype_center.py" --port "$port" &
proto=$!
trap 'kill $proto 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if curl -s "http://127.0.0.1:$port/all_positions/" >/dev/null 2>&1; then break; fi
    sleep 0.1
done

"$loadgen" --legacy-center "http://127.0.0.1:$port" "${pass[@]}"
