#!/usr/bin/env bash
# Review-room benchmark (issue 5): fan-out latency with 1,000 reviewers in one room, and RSS per
# idle reviewer connection with 10,000 connections. Each scenario runs against a fresh casehub
# (embedded store, durability on, rate limits off, a temporary data dir) and, in the same run,
# against the minimal tokio-tungstenite broadcast baseline (bench/rooms_baseline.rs).
#   claims: a publisher claims and releases a pending review at a steady rate; each is one room
#           event; latency = the publisher's send → each receiver's receipt of that event.
#   intake: POST /webhook/support/collaborative for fresh cases at the steady rate; latency =
#           POST sent → each receiver's receipt of review.requested (casehub only: the baseline
#           has no HTTP side).
#   idle:   the server's VmRSS before and after opening the idle connections, per connection
#           (one reviewer identity, no pending review: the cost of a connection as such).
#   idle-room: the same for casehub in a lived-in room: ROOM_REVIEWERS distinct reviewers
#           (presence) and ROOM_PENDING pending reviews, so every welcome lists them.
# Prints a result line per scenario and target, then a table with the ratios to the baseline.
# Usage: bench/rooms.sh [runs=1]
# Environment: RECEIVERS=1000 RATE=20 DURATION=20 WARMUP=2 CONNECTIONS=10000 ROOM_REVIEWERS=1000
#              ROOM_PENDING=50 SCENARIOS="claims intake idle idle-room" DURABLE=true
#              JOBS=2 (cargo build jobs) CARGO_TARGET_DIR (default target)
# Room events are written to the store (fsync with durability on) before they fan out, so the
# script also prints the data disk's 4 KiB O_DSYNC write latency: a disk shared with builds
# shows up there first.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1}
RECEIVERS=${RECEIVERS:-1000}
RATE=${RATE:-20}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-10000}
ROOM_REVIEWERS=${ROOM_REVIEWERS:-1000}
ROOM_PENDING=${ROOM_PENDING:-50}
SCENARIOS=${SCENARIOS:-claims intake idle idle-room}
DURABLE=${DURABLE:-true}
TARGET=${CARGO_TARGET_DIR:-target}
HUB_ADDR=127.0.0.1:18090
BASE_ADDR=127.0.0.1:18091

# A connection is a file descriptor on each side (the load tool also raises its soft limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < CONNECTIONS + 1000)); then
  echo "open-file limit $(ulimit -n) is below $((CONNECTIONS + 1000)); run as root or lower CONNECTIONS" >&2
  exit 1
fi
cargo build --release --locked -j "${JOBS:-2}" -p casehub -p casehub-bench >/dev/null
LOAD=$TARGET/release/rooms-load

DATA=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

SERVER_PID=
start_casehub() { # fresh casehub on HUB_ADDR in a new data dir
  local dir
  dir=$(mktemp -d -p "$DATA")
  CASEHUB__SERVER__BIND=$HUB_ADDR CASEHUB__STORE__DATA_DIR=$dir CASEHUB__STORE__DURABLE=$DURABLE \
  CASEHUB__RATE_LIMITS__ENABLED=false RUST_LOG=warn "$TARGET/release/casehub" >>"$DATA/casehub.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 100); do curl -s -o /dev/null "http://$HUB_ADDR/api/health" && return; sleep 0.1; done
  echo "casehub did not start; log:" >&2; cat "$DATA/casehub.log" >&2; exit 1
}
start_baseline() {
  "$TARGET/release/rooms-baseline" "$BASE_ADDR" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/${BASE_ADDR%:*}/${BASE_ADDR#*:}") 2>/dev/null && return; sleep 0.1; done
  echo "rooms-baseline did not start" >&2; exit 1
}
stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)," \
  "$(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); commit $(git rev-parse --short HEAD)"
echo "receivers=$RECEIVERS rate=$RATE/s duration=${DURATION}s warmup=${WARMUP}s connections=$CONNECTIONS" \
  "room_reviewers=$ROOM_REVIEWERS room_pending=$ROOM_PENDING runs=$RUNS nofile=$(ulimit -n)" \
  "load=$(cut -d' ' -f1-3 /proc/loadavg)"
dsync_ms() { # mean latency of a 4 KiB O_DSYNC write in the data dir
  local secs
  secs=$(dd if=/dev/zero of="$DATA/probe" bs=4k count=200 oflag=dsync 2>&1 | awk '/copied/ {print $(NF-3)}')
  rm -f "$DATA/probe"
  awk -v s="$secs" 'BEGIN { printf "%.2f", s * 1000 / 200 }'
}
echo "durable=$DURABLE data disk: $(dsync_ms) ms per 4 KiB O_DSYNC write"
FANOUT=(--receivers "$RECEIVERS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP")
RESULTS=$DATA/results
: >"$RESULTS"
record() { tee -a "$RESULTS"; }

for run in $(seq "$RUNS"); do
  for scenario in $SCENARIOS; do
    echo "run $run $scenario: load $(cut -d' ' -f1-3 /proc/loadavg), dsync $(dsync_ms) ms" >&2
    case $scenario in
      claims)
        start_baseline
        $LOAD claims --ws "ws://$BASE_ADDR" --pid "$SERVER_PID" --label baseline "${FANOUT[@]}" | sed "s/^/run=$run /" | record
        stop_server
        start_casehub
        $LOAD claims --ws "ws://$HUB_ADDR" --http "http://$HUB_ADDR" --pid "$SERVER_PID" "${FANOUT[@]}" | sed "s/^/run=$run /" | record
        stop_server
        ;;
      intake)
        start_casehub
        $LOAD intake --ws "ws://$HUB_ADDR" --http "http://$HUB_ADDR" --pid "$SERVER_PID" "${FANOUT[@]}" | sed "s/^/run=$run /" | record
        stop_server
        ;;
      idle)
        start_baseline
        $LOAD idle --ws "ws://$BASE_ADDR" --pid "$SERVER_PID" --label baseline \
          --connections "$CONNECTIONS" | sed "s/^/run=$run /" | record
        stop_server
        start_casehub
        $LOAD idle --ws "ws://$HUB_ADDR" --http "http://$HUB_ADDR" --pid "$SERVER_PID" \
          --connections "$CONNECTIONS" | sed "s/^/run=$run /" | record
        stop_server
        ;;
      idle-room)
        start_casehub
        $LOAD idle --ws "ws://$HUB_ADDR" --http "http://$HUB_ADDR" --pid "$SERVER_PID" \
          --connections "$CONNECTIONS" --reviewers "$ROOM_REVIEWERS" --pending "$ROOM_PENDING" \
          | sed "s/^/run=$run idle_variant=room /" | record
        stop_server
        ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done
done

# The table: one row per run, scenario and target; latency ratios to the baseline's claims run.
echo
awk '
  function v(key,   i, kv) { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == key) return kv[2] } return "" }
  v("scenario") == "claims" { if (v("target") == "baseline") base[v("run")] = v("p99_ms") }
  v("scenario") == "idle" { if (v("target") == "baseline") idle[v("run")] = v("per_conn_kib") }
  { line[NR] = $0 }
  END {
    printf "| run | scenario | target | p50 ms | p99 ms | max ms | received / expected | gaps | closed | p99 ÷ baseline p99 | server CPU µs/frame |\n"
    printf "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for (n = 1; n <= NR; n++) {
      $0 = line[n]
      if (v("scenario") == "idle") continue
      r = (base[v("run")] > 0 && v("scenario") == "claims") ? sprintf("%.2f", v("p99_ms") / base[v("run")]) : "-"
      printf "| %s | %s | %s | %.2f | %.2f | %.2f | %s / %s | %s | %s | %s | %s |\n", v("run"), v("scenario"), v("target"),
        v("p50_ms"), v("p99_ms"), v("max_ms"), v("samples"), v("expected"), v("gaps"), v("closed"), r,
        v("server_cpu_us_per_frame")
    }
    printf "\n| run | target | connections | reviewers | pending | welcome bytes | RSS before KiB | RSS after KiB | KiB per idle connection | ÷ baseline | closed |\n"
    printf "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for (n = 1; n <= NR; n++) {
      $0 = line[n]
      if (v("scenario") != "idle") continue
      r = (idle[v("run")] > 0) ? sprintf("%.2f", v("per_conn_kib") / idle[v("run")]) : "-"
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %s |\n", v("run"), v("target"), v("connections"),
        v("reviewers"), v("pending"), v("first_welcome_bytes"), v("rss_before_kib"), v("rss_after_kib"),
        v("per_conn_kib"), r, v("closed")
    }
  }' "$RESULTS"
