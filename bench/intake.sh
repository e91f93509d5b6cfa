#!/usr/bin/env bash
# Intake benchmark: wrk against POST /webhook/support/intake on casehub with the embedded store
# (durability on) and with the Redis store (a private redis-server, AOF with appendfsync always),
# rate limits off, and in the same run against the minimal axum JSON echo baseline (the ratio the
# issues set targets on) and against the same echo storing each body durably under a fresh
# UUID v4, once in redb (group commit, fsync) and once in Redis (AOF always): the floor of any
# durable intake on each store.
# Prints req/s, p50, p99 and the servers' CPU time per request for each, and the ratios to the
# baselines.
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
DURABLE_ECHO_ADDR=127.0.0.1:18083
REDIS_ECHO_ADDR=127.0.0.1:18084
REDIS_PORT=16399
cleanup() {
  kill "${ECHO_PID:-}" "${HUB_PID:-}" "${REDIS_HUB_PID:-}" "${REDIS_PID:-}" \
    "${DURABLE_ECHO_PID:-}" "${REDIS_ECHO_PID:-}" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

target/release/echo-baseline "$ECHO_ADDR" & ECHO_PID=$!
target/release/echo-baseline "$DURABLE_ECHO_ADDR" --durable "$DATA/durable-echo" & DURABLE_ECHO_PID=$!
CASEHUB__SERVER__BIND=$HUB_ADDR CASEHUB__STORE__DATA_DIR=$DATA/embedded CASEHUB__STORE__DURABLE=true \
CASEHUB__RATE_LIMITS__ENABLED=false RUST_LOG=warn target/release/casehub & HUB_PID=$!
mkdir -p "$DATA/redis"
redis-server --bind 127.0.0.1 --port $REDIS_PORT --dir "$DATA/redis" --save "" \
  --appendonly yes --appendfsync always --logfile "" >/dev/null & REDIS_PID=$!
sleep 0.5
CASEHUB__SERVER__BIND=$REDIS_HUB_ADDR CASEHUB__STORE__URL=redis://127.0.0.1:$REDIS_PORT/0 \
CASEHUB__RATE_LIMITS__ENABLED=false RUST_LOG=warn target/release/casehub & REDIS_HUB_PID=$!
# Its own database on the same server (casehub's data stays out of its way).
target/release/echo-baseline "$REDIS_ECHO_ADDR" --redis "redis://127.0.0.1:$REDIS_PORT/1" & REDIS_ECHO_PID=$!
for addr in $ECHO_ADDR $HUB_ADDR $REDIS_HUB_ADDR $DURABLE_ECHO_ADDR $REDIS_ECHO_ADDR; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.1; done
done

# CPU seconds (user + system) the given processes have used so far.
cpu() {
  local ticks=0 pid
  for pid in "$@"; do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

run() { # name addr pid... -> "rps p50 p99 and the servers' CPU per request"
  local name=$1 addr=$2; shift 2
  local out before after
  before=$(cpu "$@")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/intake.lua "http://$addr/webhook/support/intake")
  after=$(cpu "$@")
  local rps p50 p99 requests
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  local us
  us=$(awk -v a="$after" -v b="$before" -v n="$requests" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }')
  echo "$name rps=$rps p50=$p50 p99=$p99 non2xx=${non2xx:-0} server_cpu_us_per_request=$us"
}

echo "connections=$CONNS duration=$DURATION threads=$THREADS"
# The Redis targets' CPU includes redis-server's: it shares the same two cores.
BASE=$(run echo-baseline $ECHO_ADDR $ECHO_PID); echo "$BASE"
DBASE=$(run echo-durable-redb $DURABLE_ECHO_ADDR $DURABLE_ECHO_PID); echo "$DBASE"
HUB=$(run casehub-embedded $HUB_ADDR $HUB_PID); echo "$HUB"
RBASE=$(run echo-durable-redis $REDIS_ECHO_ADDR $REDIS_ECHO_PID $REDIS_PID); echo "$RBASE"
RHUB=$(run casehub-redis $REDIS_HUB_ADDR $REDIS_HUB_PID $REDIS_PID); echo "$RHUB"
rps() { sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$1"; }
awk -v h="$(rps "$HUB")" -v r="$(rps "$RHUB")" -v b="$(rps "$BASE")" \
  -v db="$(rps "$DBASE")" -v rb="$(rps "$RBASE")" 'BEGIN {
    printf "ratio embedded/echo = %.3f (target 0.5)\nratio redis/echo = %.3f (target 0.35)\n", h/b, r/b
    printf "ratio durable-redb-echo/echo = %.3f (the most any durable redb intake could reach)\n", db/b
    printf "ratio durable-redis-echo/echo = %.3f (the same on Redis)\n", rb/b
    printf "ratio embedded/durable-redb-echo = %.3f\nratio redis/durable-redis-echo = %.3f\n", h/db, r/rb
  }'
