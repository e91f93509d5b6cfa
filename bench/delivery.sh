#!/usr/bin/env bash
# Delivery benchmark (issue 4 "Speed"). casehub runs on the embedded store (durability on, rate
# limits off, alerts off, private targets allowed) next to bench/delivery.rs's receiver, which
# answers 200 at once, and its black hole, which accepts connections and never answers.
#   throughput: FILL seconds of intake (wrk) queue case.created for a paused endpoint; then the
#               endpoint is resumed and the receiver times the drain: deliveries per second.
#               In the same run wrk POSTs the last delivery's exact signed payload (same body,
#               same headers) to the same receiver with as many connections as casehub may use
#               per endpoint (delivery.per_endpoint_concurrency = CONNS, workers = 2 × CONNS):
#               the load generator's rate. And `delivery-bench replay` POSTs the same request
#               from a reqwest client set up as casehub's sender, same connections: what the
#               HTTP client casehub sends with can do alone (no queue, store or signing).
#   latency:    an endpoint subscribed to "*" while `delivery-bench drive` makes RATE cases per
#               second for DURATION seconds, each case.created + case.updated (intake, then the
#               self-service offer); the receiver measures arrival minus the envelope's timestamp.
#               Once alone, once with a black-hole endpoint subscribed to case.created (half of
#               the events).
# Prints one line per measurement and the two ratios against their targets (≥ 0.5, ≤ 1.5).
# Usage: bench/delivery.sh
# Environment: FILL=6 CONNS=8 RATE=200 DURATION=15 CARGO_TARGET_DIR (default target)
set -euo pipefail
cd "$(dirname "$0")/.."
FILL=${FILL:-6}
CONNS=${CONNS:-8}
RATE=${RATE:-200}
DURATION=${DURATION:-15}
TARGET=${CARGO_TARGET_DIR:-target}
HUB=127.0.0.1:18100
RX=127.0.0.1:18101
HOLE=127.0.0.1:18102
for tool in wrk jq; do
  command -v $tool >/dev/null || { apt-get update -qq && apt-get install -y -qq $tool; }
done
cargo build --release --locked -p casehub -p casehub-bench >/dev/null

DATA=$(mktemp -d)
cleanup() {
  kill "${RX_PID:-}" "${HUB_PID:-}" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

"$TARGET/release/delivery-bench" receiver $RX $HOLE & RX_PID=$!
CASEHUB__SERVER__BIND=$HUB CASEHUB__STORE__DATA_DIR=$DATA CASEHUB__STORE__DURABLE=true \
CASEHUB__RATE_LIMITS__ENABLED=false CASEHUB__ALERTS__ENABLED=false \
CASEHUB__DELIVERY__ALLOW_PRIVATE_TARGETS=true CASEHUB__DELIVERY__PER_ENDPOINT_CONCURRENCY=$CONNS \
CASEHUB__DELIVERY__WORKERS=$((CONNS * 2)) \
RUST_LOG=error "$TARGET/release/casehub" & HUB_PID=$!
for addr in $RX $HUB; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://$addr/" && break; sleep 0.1; done
done

admin() { curl -sf -H 'X-API-Key: dev-admin-key' -H 'Content-Type: application/json' "$@"; }
endpoint() { # url events-json [status] -> id
  admin -X POST "http://$HUB/v1/webhooks/endpoints" \
    -d "{\"url\":\"$1\",\"events\":$2,\"status\":\"${3:-active}\"}" | jq -r .data.id
}
backlog() { curl -s "http://$HUB/api/health" | jq -r '.checks.delivery.backlog // 0'; }
stats() { curl -s "http://$RX/stats/$1"; }
reset() { curl -s -X POST "http://$RX/reset" >/dev/null; }
# Waits until the receiver's count on path $1 stops growing for 2 s (at most 120 s): one
# request the receiver answers then, so the harness does not poll while casehub drains.
drained() { curl -s --max-time 130 "http://$RX/settled/$1" >/dev/null; }

echo "fill=${FILL}s connections=$CONNS rate=${RATE}/s duration=${DURATION}s"

# Throughput.
BULK=$(endpoint "http://$RX/bulk" '["case.created"]' paused)
wrk -t2 -c32 -d"${FILL}s" -s bench/intake.lua "http://$HUB/webhook/support/intake" >/dev/null
for _ in $(seq 100); do
  QUEUED=$(backlog); sleep 0.3; [ "$(backlog)" = "$QUEUED" ] && break
done
reset
admin -X PATCH "http://$HUB/v1/webhooks/endpoints/$BULK" -d '{"status":"active"}' >/dev/null
drained bulk
HUB_RATE=$(stats bulk | jq -r .per_second)
echo "casehub deliveries: queued=$QUEUED delivered=$(stats bulk | jq -r .count) per_second=$HUB_RATE"
admin -X DELETE "http://$HUB/v1/webhooks/endpoints/$BULK" >/dev/null

LUA=$DATA/replay.lua
curl -s "http://$RX/last/bulk" | jq -r '
  "wrk.method = \"POST\"",
  (.headers | to_entries[] | "wrk.headers[\"\(.key)\"] = \(.value | @json)"),
  "wrk.body = \(.body | @json)"' >"$LUA"
WRK_OUT=$(wrk -t2 -c"$CONNS" -d10s -s "$LUA" "http://$RX/replay")
WRK_RATE=$(awk '/Requests\/sec/ {print $2}' <<<"$WRK_OUT")
echo "wrk alone, same signed payload, $CONNS connections: per_second=$WRK_RATE"
REQWEST_OUT=$("$TARGET/release/delivery-bench" replay "http://$RX/last/bulk" "http://$RX/replay-reqwest" "$CONNS" 10)
REQWEST_RATE=$(sed -E 's/per_second=([0-9]+).*/\1/' <<<"$REQWEST_OUT")
echo "reqwest alone, same signed payload, $CONNS connections: $REQWEST_OUT"

# Latency, without and with a black hole.
LIVE=$(endpoint "http://$RX/live" '["*"]')
latency() { # label -> prints the line, sets P99
  reset
  "$TARGET/release/delivery-bench" drive "http://$HUB" "$RATE" "$DURATION"
  drained live
  local s; s=$(stats live)
  P99=$(jq -r .p99_ms <<<"$s")
  echo "$1: events=$(jq -r .count <<<"$s") p50=$(jq -r .p50_ms <<<"$s")ms p90=$(jq -r .p90_ms <<<"$s")ms p99=${P99}ms max=$(jq -r .max_ms <<<"$s")ms"
}
latency "healthy endpoint alone"
ALONE=$P99
endpoint "http://$HOLE/hook" '["case.created"]' >/dev/null
latency "healthy endpoint next to a black hole"
WITH=$P99

awk -v h="$HUB_RATE" -v w="$WRK_RATE" -v q="$REQWEST_RATE" -v a="$ALONE" -v b="$WITH" 'BEGIN {
  printf "ratio deliveries/wrk = %.3f (target >= 0.5)\n", h / w
  printf "ratio reqwest alone/wrk = %.3f (the most a reqwest sender could reach)\n", q / w
  printf "ratio deliveries/reqwest alone = %.3f\n", h / q
  printf "ratio p99 with black hole / alone = %.2f (target <= 1.5)\n", b / (a > 0 ? a : 1)
}'
