#!/usr/bin/env bash
# The relay comparison of BENCHMARKS.md's goals: line-server against the Node `ws` relay and the raw-TCP relay,
# all on loopback beside the load generator. Builds the release binaries, starts each relay on a
# free port (the API key is generated here and passed only through the environment, never
# printed), runs `line-loadgen compare` (capacity ramps, same-load latency, memory per call, a
# soak on line-server), then line-server's datagram path (WebTransport) beside its WebSocket path
# with the same 2.5 ms frames (1 KB, what fits a datagram), stops every relay, writes
# target/bench/relay.json and relay-{line,line-wt}-2.5ms.json and prints the summaries.
# A benchmark, not a test: it never fails on a number.
#
# Env to shorten or shape it:
#   LINE_BENCH_SOAK_SECS    soak length (default 600, the goal's 10 minutes; 0 skips it)
#   LINE_BENCH_SOAK_CALLS   calls during the soak (default 50)
#   LINE_BENCH_SECS         measured seconds per step (default 5), LINE_BENCH_WARMUP_SECS (default 2)
#   LINE_BENCH_MAX_CALLS    the largest N a ramp tries (default 4096)
#   LINE_BENCH_P99_MS       the capacity bound on p99 latency (default 2, the goal's)
#   LINE_BENCH_MEMORY_CALLS Ns for memory per call (default 25,50,100)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
echo "bench-relay: building release binaries"
cargo build --release --quiet -p line-server -p line-loadgen -p line-tcp-relay
bin=target/release
out=target/bench
mkdir -p "$out"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_listening() {
  # $1: port. Up to 10 s for the relay to accept connections.
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench-relay: nothing listens on port $1" >&2
  exit 1
}

APIKEY=$("$bin/line-server" generate-apikey)
export APIKEY LINE_BENCH_APIKEY=$APIKEY

line_port=$("$bin/line-loadgen" free-port)
# stdout carries the start links, which hold the key: discard it. Every simulated person connects
# from 127.0.0.1, so the per-address caps are off.
BIND=127.0.0.1 PORT=$line_port LOG_LEVEL=warn MAX_SOCKETS_PER_IP=0 MAX_CONNECTIONS_PER_IP=0 \
  "$bin/line-server" >/dev/null 2>"$out/line-server.log" &
line_pid=$!
pids+=("$line_pid")
wait_listening "$line_port"

node_port=$("$bin/line-loadgen" free-port)
BIND=127.0.0.1 PORT=$node_port node bench/baselines/node-ws/relay.mjs 2>"$out/node-ws.log" &
node_pid=$!
pids+=("$node_pid")
wait_listening "$node_port"

tcp_port=$("$bin/line-loadgen" free-port)
"$bin/line-tcp-relay" "127.0.0.1:$tcp_port" 2>"$out/tcp-relay.log" &
tcp_pid=$!
pids+=("$tcp_pid")
wait_listening "$tcp_port"

echo "bench-relay: relays up (load average $(cut -d' ' -f1-3 /proc/loadavg)); this takes a few minutes plus the soak"
"$bin/line-loadgen" compare \
  --line-addr "127.0.0.1:$line_port" --line-pid "$line_pid" \
  --node-addr "127.0.0.1:$node_port" --node-pid "$node_pid" \
  --tcp-addr "127.0.0.1:$tcp_port" --tcp-pid "$tcp_pid" \
  --warmup-secs "${LINE_BENCH_WARMUP_SECS:-2}" --secs "${LINE_BENCH_SECS:-5}" \
  --max "${LINE_BENCH_MAX_CALLS:-4096}" --p99-ms "${LINE_BENCH_P99_MS:-2}" \
  --memory-calls "${LINE_BENCH_MEMORY_CALLS:-25,50,100}" \
  --soak-calls "${LINE_BENCH_SOAK_CALLS:-50}" --soak-secs "${LINE_BENCH_SOAK_SECS:-600}" \
  --json "$out/relay.json"
echo "bench-relay: figures in $out/relay.json"

# The datagram path: the same relay over WebTransport (its UDP port comes from /webtransport),
# against its WebSocket path with the same frames, one ramp each.
for target in line line-wt; do
  echo "bench-relay: capacity of $target with 2.5 ms frames"
  "$bin/line-loadgen" ramp --target "$target" --addr "127.0.0.1:$line_port" --server-pid "$line_pid" \
    --frame-samples 500 \
    --warmup-secs "${LINE_BENCH_WARMUP_SECS:-2}" --secs "${LINE_BENCH_SECS:-5}" \
    --max "${LINE_BENCH_MAX_CALLS:-4096}" --p99-ms "${LINE_BENCH_P99_MS:-2}" \
    --json "$out/relay-$target-2.5ms.json"
done
