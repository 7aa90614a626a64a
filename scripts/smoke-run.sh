#!/usr/bin/env bash
# Runs `just run` as the README shows it, on a spare port, and checks what a person would:
# the printed link opens the client page and the wasm bundle is served as application/wasm.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${SMOKE_PORT:-17787}
log=$(mktemp)
# In a session of its own, so that its process group holds just, cargo and the server it starts,
# and the script stops exactly those by that group's id.
PORT=$port setsid just run >"$log" 2>&1 &
pid=$!
stop() {
  kill -TERM -- -"$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 -- -"$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- -"$pid" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT

link=""
for _ in $(seq 1 1800); do
  link=$(grep -o "http://127.0.0.1:$port/line.html?apikey=[A-Za-z]*#generate_leaf" "$log" | head -1 || true)
  [ -n "$link" ] && break
  kill -0 $pid 2>/dev/null || { cat "$log"; echo "smoke: 'just run' exited early" >&2; exit 1; }
  sleep 0.5
done
[ -n "$link" ] || { cat "$log"; echo "smoke: 'just run' printed no link" >&2; exit 1; }

page=${link%%#*}
curl -fsS "$page" | grep -q '<title>line</title>' || { echo "smoke: $page is not the client page" >&2; exit 1; }
ctype=$(curl -fsS -o /dev/null -w '%{content_type}' "http://127.0.0.1:$port/pkg/line_client_bg.wasm")
[ "$ctype" = "application/wasm" ] || { echo "smoke: wasm served as '$ctype'" >&2; exit 1; }
echo "smoke: 'just run' serves the client page and the wasm bundle on port $port"
