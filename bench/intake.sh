#!/usr/bin/env bash
# Intake benchmark: wrk against POST /webhook/support/intake on casehub with the embedded store
# (durability on) and with the Redis store (a private redis-server, AOF with appendfsync always),
# rate limits off, and in the same run against the minimal axum JSON echo baseline.
# Prints req/s, p50 and p99 for each and the ratios to the baseline.
# Usage: bench/intake.sh [connections=64] [duration=20s]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-64}
DURATION=${2:-20s}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
cargo build --release --locked -p casehub -p casehub-bench >/dev/null

DATA=$(mktemp -d)
ECHO_ADDR=127.0.0.1:18081
HUB_ADDR=127.0.0.1:18080
REDIS_HUB_ADDR=127.0.0.1:18082
REDIS_PORT=16399
cleanup() {
  kill "${ECHO_PID:-}" "${HUB_PID:-}" "${REDIS_HUB_PID:-}" "${REDIS_PID:-}" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

target/release/echo-baseline "$ECHO_ADDR" & ECHO_PID=$!
CASEHUB__SERVER__BIND=$HUB_ADDR CASEHUB__STORE__DATA_DIR=$DATA/embedded CASEHUB__STORE__DURABLE=true \
CASEHUB__RATE_LIMITS__ENABLED=false RUST_LOG=warn target/release/casehub & HUB_PID=$!
mkdir -p "$DATA/redis"
redis-server --bind 127.0.0.1 --port $REDIS_PORT --dir "$DATA/redis" --save "" \
  --appendonly yes --appendfsync always --logfile "" >/dev/null & REDIS_PID=$!
sleep 0.5
CASEHUB__SERVER__BIND=$REDIS_HUB_ADDR CASEHUB__STORE__URL=redis://127.0.0.1:$REDIS_PORT/0 \
CASEHUB__RATE_LIMITS__ENABLED=false RUST_LOG=warn target/release/casehub & REDIS_HUB_PID=$!
for addr in $ECHO_ADDR $HUB_ADDR $REDIS_HUB_ADDR; do
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
HUB=$(run casehub-embedded $HUB_ADDR); echo "$HUB"
RHUB=$(run casehub-redis $REDIS_HUB_ADDR); echo "$RHUB"
rps() { sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$1"; }
awk -v h="$(rps "$HUB")" -v r="$(rps "$RHUB")" -v b="$(rps "$BASE")" \
  'BEGIN { printf "ratio embedded/echo = %.3f\nratio redis/echo = %.3f\n", h/b, r/b }'
