#!/usr/bin/env bash
# Benchmarks the center against the prototype baseline (../shared/reference) in one run.
# Usage: scripts/bench-center.sh [--seconds N] [--conns N] [--pg "host=127.0.0.1 user=postgres dbname=test"]
#            [--no-sqlite] [--no-normal] [--race-conns N] [--race-rounds N] [--race-hot N]
# Every option goes to crates/center/examples/loadgen.rs. PROTO_VENV and PROTO_PORT choose the
# prototype's virtualenv (created on first use) and port.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
reference="$here/../shared/reference"
venv="${PROTO_VENV:-${CARGO_TARGET_DIR:-$here/target}/proto-venv}"
port="${PROTO_PORT:-18080}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$reference/requirements.txt"
fi

cargo build --release -p hedge-center --example loadgen
target_dir="${CARGO_TARGET_DIR:-$here/target}"

"$venv/bin/python" "$reference/prototype_center.py" --port "$port" &
proto=$!
trap 'kill $proto 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if curl -s "http://127.0.0.1:$port/all_positions/" >/dev/null 2>&1; then break; fi
    sleep 0.1
done

"$target_dir/release/examples/loadgen" --prototype "http://127.0.0.1:$port" "$@"
