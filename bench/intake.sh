#!/usr/bin/env bash
# Intake benchmark: wrk against POST /webhook/support/intake on casehub (embedded store,
# durability on, rate limits off) and, in the same run, against the minimal axum JSON echo
# baseline. Prints req/s, p50 and p99 for both and the ratio.
# Usage: bench/intake.sh [connections=64] [duration=20s]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-64}
DURATION=${2:-20s}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --locked -p casehub -p casehub-bench >/dev/null

DATA=$(mktemp -d)
ECHO_ADDR=127.0.0.1:18081
HUB_ADDR=127.0.0.1:18080
cleanup() { kill "${ECHO_PID:-}" "${HUB_PID:-}" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

target/release/echo-baseline "$ECHO_ADDR" & ECHO_PID=$!
CASEHUB__SERVER__BIND=$HUB_ADDR CASEHUB__STORE__DATA_DIR=$DATA CASEHUB__STORE__DURABLE=true \
CASEHUB__RATE_LIMITS__ENABLED=false RUST_LOG=warn target/release/casehub & HUB_PID=$!
for addr in $ECHO_ADDR $HUB_ADDR; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.1; done
done

run() { # name addr -> "rps p50_ms p99_ms"
  local out
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/intake.lua "http://$2/webhook/support/intake")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  echo "$1 rps=$rps p50=$p50 p99=$p99 non2xx=${non2xx:-0}"
}

echo "connections=$CONNS duration=$DURATION threads=$THREADS"
BASE=$(run echo-baseline $ECHO_ADDR); echo "$BASE"
HUB=$(run casehub-intake $HUB_ADDR); echo "$HUB"
b=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$BASE")
h=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$HUB")
awk -v h="$h" -v b="$b" 'BEGIN { printf "ratio casehub/echo = %.2f\n", h/b }'
