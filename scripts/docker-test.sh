#!/usr/bin/env bash
# Builds the image with a real Docker engine and runs it exactly as the README's run line does:
#
#   scripts/docker-test.sh          the Dockerfile's runtime stage, byte for byte, around the
#                                   dist/line-server that `just build` made (`just test-docker`,
#                                   in `just test`): a first stage that only holds that binary
#                                   stands in for the build stage
#   scripts/docker-test.sh --full   the whole `docker build .`, compiling everything inside
#                                   (`just test-docker-build`)
#
# then `docker run -d --rm -p <free port>:443 -p <udp port>:443/udp -e APIKEY -e SITEURL
# -e WEBTRANSPORT_PUBLIC_PORT -v <fullchain>:/tmp/fullchain.pem:ro -v <privkey>:/tmp/privkey.pem:ro
# line.example.com/line` and checks, through the published ports: the page and the wasm bundle over
# HTTPS, a call of two WebSocket peers and one of a WebTransport peer (UDP, the container's HTTPS
# certificate) with a WebSocket peer (server/tests/container.rs),
# the process's uid, the HEALTHCHECK reaching `healthy`, a renewed certificate served without a
# restart, the key in the logs only in the start links, and `docker stop` ending it with exit code 0
# within the grace period.
#
# The engine: one already running (DOCKER_HOST or the default socket), else Debian's docker.io
# (installed when missing) started here with its data root in target/docker/ and stopped by its
# process id at the end; it leaves iptables, forwarding and NAT alone, so the machine's other tests
# see no change (published ports go through docker-proxy). Base images that are not there are made
# offline by scripts/docker-stand-ins.sh and kept in that data root for the next run.
#
# Needs root (or a running engine); without one it says SKIPPED loudly, and fails under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

full=false
case ${1:-} in
  --full) full=true ;;
  "") ;;
  *) echo "usage: scripts/docker-test.sh [--full]" >&2; exit 2 ;;
esac

t0=$(date +%s)
say() { echo "docker-test: $* [$(($(date +%s) - t0)) s]"; }
fail() { echo "docker-test: FAIL: $*" >&2; exit 1; }
skip() {
  if [ "${CI:-}" = "true" ]; then echo "docker-test: $1; CI must run it" >&2; exit 1; fi
  echo "!!!!!!!! SKIPPED: docker-test: $1 !!!!!!!!" >&2
  exit 0
}
is_root() { [ "$(id -u)" -eq 0 ]; }
apt_install() {
  # $1: what for; rest: Debian packages. As scripts/setup.sh installs.
  local what=$1; shift
  is_root && command -v apt-get >/dev/null 2>&1 \
    || skip "$what is missing; on Debian or Ubuntu: sudo apt-get install -y --no-install-recommends $*"
  say "installing $what ($*) with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

$full || [ -x dist/line-server ] || fail "no dist/line-server: run 'just build' first"

# The call's client, built before the container runs: compiled meanwhile, it would start only after
# line-server had already reloaded the renewed certificate.
cargo test -q -p line-server --test container --no-run

# One run at a time on a machine: two engines started here would share the docker0 bridge, and one
# run would stop the engine the other uses. (Without root no engine is started here.)
if is_root; then
  exec 9>/tmp/line-docker-test.lock
  flock 9
fi

# --- the engine ------------------------------------------------------------------------------------
# Debian's own CLI first: it builds with BuildKit by itself (DOCKER_BUILDKIT=1), where a newer CLI
# needs the buildx plugin.
cli() { if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker || true; fi; }
DOCKER=$(cli)
export DOCKER DOCKER_BUILDKIT=1
state=$PWD/target/docker
# Short: containerd's sockets live under the exec root, and socket paths are limited to 108 bytes.
exec_root=/run/line-docker
own_socket=unix://$exec_root/docker.sock
dockerd_pid=""
engine_up() { [ -n "$DOCKER" ] && "$DOCKER" version >/dev/null 2>&1; }

if [ -n "${DOCKER_HOST:-}" ] && engine_up; then
  say "using the engine at DOCKER_HOST"
elif engine_up; then
  say "using the running engine"
elif DOCKER_HOST=$own_socket engine_up; then
  export DOCKER_HOST=$own_socket
  say "using the engine an earlier run left at $DOCKER_HOST"
else
  is_root || skip "no Docker engine runs and starting one needs root"
  command -v dockerd >/dev/null 2>&1 || apt_install "the Docker engine" docker.io
  DOCKER=$(cli)
  [ -n "$DOCKER" ] || fail "docker.io installed no docker CLI"
  mkdir -p "$state/data" "$exec_root"
  echo '{}' >"$state/daemon.json"
  say "starting dockerd (data root $state/data)"
  dockerd --config-file "$state/daemon.json" --data-root "$state/data" --exec-root "$exec_root" \
    --pidfile "$exec_root/dockerd.pid" --host "$own_socket" \
    --iptables=false --ip-forward=false --ip-masq=false \
    >"$state/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST=$own_socket
  for _ in $(seq 1 300); do
    engine_up && break
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -n 20 "$state/dockerd.log" >&2; skip "dockerd does not start here"; }
    sleep 0.1
  done
  engine_up || { tail -n 20 "$state/dockerd.log" >&2; fail "dockerd did not answer within 30 s"; }
fi

work=$(mktemp -d /tmp/line-docker-test.XXXXXX)
container=""
logs_pid=""
cleanup() {
  local status=$?
  if [ -n "$container" ] && "$DOCKER" inspect "$container" >/dev/null 2>&1; then
    [ $status -eq 0 ] || { echo "--- docker logs $container" >&2; "$DOCKER" logs "$container" 2>&1 | tail -n 30 >&2; }
    "$DOCKER" rm -f "$container" >/dev/null 2>&1 || true
  fi
  [ -z "$logs_pid" ] || kill "$logs_pid" 2>/dev/null || true
  if [ -n "$dockerd_pid" ]; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    # dockerd leaves its network namespace mounted in the exec root.
    findmnt -rn -o TARGET | awk -v d="$exec_root/" 'index($0, d) == 1' | sort -r | xargs -r umount -l
    rm -rf --one-file-system "$exec_root"
    say "stopped dockerd (pid $dockerd_pid)"
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

# --- the image -------------------------------------------------------------------------------------
image=line.example.com/line
# The runtime stage: from the last FROM to the end of the Dockerfile.
last_from=$(grep -n '^FROM ' Dockerfile | tail -n 1 | cut -d: -f1)
runtime=$(tail -n "+$last_from" Dockerfile)
# distroless's "nonroot", as the README says.
uid=65532 gid=65532

make_base() {
  local which=$1
  if is_root && command -v apt-get >/dev/null 2>&1; then
    scripts/docker-stand-ins.sh "$which"
  fi
  # Elsewhere the engine pulls the real image.
}

if $full; then
  if is_root && ! command -v debootstrap >/dev/null 2>&1; then
    apt_install "debootstrap (for the build stage's base image)" debootstrap
  fi
  make_base build
  make_base runtime
  say "docker build . (the whole Dockerfile: setup, the wasm client and the release server)"
  build_start=$(date +%s)
  # Our engine gives containers no NAT, so the build's steps use this machine's network.
  network=()
  if [ "${DOCKER_HOST:-}" = "$own_socket" ]; then network=(--network host); fi
  # The steps as they start and end; the whole output in the log.
  { "$DOCKER" build --progress=plain "${network[@]}" -t "$image" . 2>&1; echo $? >"$work/build.status"; } \
    | tee "$work/build.log" | grep --line-buffered -E '^#[0-9]+ \[|^#[0-9]+ (DONE|ERROR)' || true
  [ "$(cat "$work/build.status")" = 0 ] || { tail -n 40 "$work/build.log" >&2; fail "docker build failed"; }
  say "docker build . took $(($(date +%s) - build_start)) s"
else
  make_base runtime
  # A first stage holding only the prebuilt binary, where the runtime stage copies it from.
  copy=$(printf '%s\n' "$runtime" | sed -n 's|^COPY --from=build \([^ ]*\) [^ ]*$|\1|p')
  [ -n "$copy" ] || fail "the runtime stage does not COPY --from=build one file"
  ctx=$work/context
  mkdir -p "$ctx"
  cp dist/line-server "$ctx/line-server"
  { printf 'FROM scratch AS build\nCOPY line-server %s\n' "$copy"; printf '%s\n' "$runtime"; } >"$ctx/Dockerfile"
  # The stage built is the Dockerfile's own, byte for byte.
  cmp -s <(tail -n +3 "$ctx/Dockerfile") <(tail -n "+$last_from" Dockerfile) \
    || fail "the runtime stage built differs from the Dockerfile's"
  "$DOCKER" build -q -t "$image" "$ctx" >/dev/null 2>"$work/build.log" \
    || { cat "$work/build.log" >&2; fail "building the runtime stage failed"; }
  say "built the Dockerfile's runtime stage around dist/line-server"
fi

# --- docker run, as the README does ----------------------------------------------------------------
site=https://line.example.com
host=${site#https://}
# A self-signed server certificate (not a CA: TLS clients refuse those as a server's) and its key,
# the key readable by the image's group only.
pair() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$host" \
    -addext "subjectAltName=DNS:$host" -addext basicConstraints=critical,CA:FALSE \
    -addext extendedKeyUsage=serverAuth -keyout "$1/privkey.pem" -out "$1/fullchain.pem" 2>/dev/null
}
mkdir -p "$work/tls" "$work/renewed"
pair "$work/tls"
chgrp "$gid" "$work/tls/privkey.pem" 2>/dev/null || chmod 0644 "$work/tls/privkey.pem"
chmod g+r "$work/tls/privkey.pem"
cp "$work/tls/fullchain.pem" "$work/first.pem"

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}
port=$(free_port)
# WebTransport's UDP port: 443 inside, another number outside, which WEBTRANSPORT_PUBLIC_PORT makes
# /webtransport name (README, "A container").
while :; do
  uport=$((20000 + RANDOM % 40000))
  [ "$uport" != "$port" ] && ! ss -Huln "sport = :$uport" | grep -q . && break
done
# (Our engine warns that containers have no forwarding: they need none, published ports included.)
apikey=$("$DOCKER" run --rm "$image" generate-apikey 2>"$work/run.err") \
  || { cat "$work/run.err" >&2; fail "the image cannot run line-server generate-apikey"; }
container=line-test-$$
# -e NAME passes the value from this environment: the key never sits on a command line.
container_id=$(APIKEY=$apikey SITEURL=$site WEBTRANSPORT_PUBLIC_PORT=$uport "$DOCKER" run -d --rm --name "$container" \
  -p "$port:443" -p "$uport:443/udp" -e APIKEY -e SITEURL -e WEBTRANSPORT_PUBLIC_PORT \
  -v "$work/tls/fullchain.pem:/tmp/fullchain.pem:ro" -v "$work/tls/privkey.pem:/tmp/privkey.pem:ro" \
  "$image" 2>"$work/run.err") || { cat "$work/run.err" >&2; fail "docker run failed"; }
started_at=$("$DOCKER" inspect -f '{{.State.StartedAt}}' "$container")
# Everything the container writes, kept past its removal (--rm).
"$DOCKER" logs -f "$container" >"$work/logs" 2>&1 &
logs_pid=$!
say "docker run: $container (${container_id:0:12}) on port $port"

https() { curl -fsS --cacert "${CA:-$work/tls/fullchain.pem}" --resolve "$host:$port:127.0.0.1" "$@"; }
for _ in $(seq 1 100); do
  https -o /dev/null "$site:$port/healthz" 2>/dev/null && break
  [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" = true ] \
    || { cat "$work/logs" >&2; fail "the container exited at start"; }
  sleep 0.1
done
https -o /dev/null "$site:$port/healthz" || { cat "$work/logs" >&2; fail "no HTTPS through the published port"; }

# The process: the image's user, no other.
ids=$("$DOCKER" top "$container" -eo pid,uid,gid,comm | awk 'NR > 1')
[ "$(printf '%s\n' "$ids" | wc -l)" -eq 1 ] || fail "more than one process in the container: $ids"
read -r _ puid pgid pcomm <<<"$ids"
[ "$puid:$pgid" = "$uid:$gid" ] && [ "$pcomm" = line-server ] \
  || fail "the container runs '$pcomm' as $puid:$pgid, not line-server as $uid:$gid"
say "line-server runs as uid $puid, gid $pgid"

# The renewal: new files written over the mounted ones, as the README's deploy hook does (cat >).
# line-server looks every 60 s (TLS_RELOAD_SECS); the rest of the checks run meanwhile.
pair "$work/renewed"
cat "$work/renewed/privkey.pem" >"$work/tls/privkey.pem"
cat "$work/renewed/fullchain.pem" >"$work/tls/fullchain.pem"
renewed_at=$(date +%s)

# The page and the wasm bundle over HTTPS, still with the first certificate.
export CA=$work/first.pem
https "$site:$port/line.html?apikey=$apikey" | grep -q '<title>line</title>' || fail "the page is not served"
https -D "$work/headers" -o "$work/line_client_bg.wasm" "$site:$port/pkg/line_client_bg.wasm" \
  || fail "the wasm bundle is not served"
grep -qi '^content-type: application/wasm' "$work/headers" || fail "the wasm bundle is not served as application/wasm"
grep -qi '^strict-transport-security:' "$work/headers" || fail "no HSTS header on HTTPS"
if ! $full; then
  cmp -s "$work/line_client_bg.wasm" www/pkg/line_client_bg.wasm \
    || fail "the wasm served is not the one in www/pkg that dist/line-server embeds"
fi
say "the page and the wasm bundle ($(stat -c %s "$work/line_client_bg.wasm") bytes) over HTTPS through port $port"

# A call: two WebSocket peers on one line, through the published port, trusting either
# certificate (line-server may reload the renewed one meanwhile; the check of that is below).
cat "$work/first.pem" "$work/renewed/fullchain.pem" >"$work/either.pem"
LINE_CONTAINER_ADDR=127.0.0.1:$port LINE_CONTAINER_SITE=$site LINE_CONTAINER_CA=$work/either.pem \
  LINE_CONTAINER_APIKEY=$apikey LINE_CONTAINER_WT_PORT=$uport \
  cargo test -q -p line-server --test container -- --ignored --nocapture 2>&1 | tee "$work/call.log" \
  | grep -E '^container:|panicked|FAILED|error' || true
grep -q '^test result: ok. 2 passed' "$work/call.log" || { cat "$work/call.log" >&2; fail "the call failed"; }

# The HEALTHCHECK: healthy after its first interval (30 s).
health=""
for _ in $(seq 1 90); do
  health=$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$container")
  [ "$health" = starting ] || break
  sleep 1
done
[ "$health" = healthy ] || fail "the container is '$health', not healthy"
say "HEALTHCHECK: healthy"

# The renewed certificate, served without a restart.
export CA=$work/renewed/fullchain.pem
until https -o /dev/null "$site:$port/healthz" 2>/dev/null; do
  [ $(($(date +%s) - renewed_at)) -lt 150 ] || fail "the renewed certificate is not served after 150 s"
  sleep 1
done
CA=$work/first.pem https -o /dev/null "$site:$port/healthz" 2>/dev/null && fail "the old certificate is still served"
[ "$("$DOCKER" inspect -f '{{.State.StartedAt}}' "$container")" = "$started_at" ] || fail "the container restarted"
grep -q 'tls certificate reloaded' "$work/logs" || fail "no 'tls certificate reloaded' in the logs"
say "the renewed certificate is served $(($(date +%s) - renewed_at)) s after the files changed, no restart"

# docker stop: SIGTERM (STOPSIGNAL), exit 0 before the grace period's SIGKILL.
grace=10   # Docker's default
"$DOCKER" wait "$container" >"$work/exit" 2>&1 &
waiter=$!
stop_start=$(date +%s%N)
"$DOCKER" stop -t "$grace" "$container" >/dev/null
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
wait "$waiter" || true
[ "$(cat "$work/exit")" = 0 ] || fail "the container exited with '$(cat "$work/exit")' on docker stop"
[ "$stop_ms" -lt $((grace * 1000)) ] || fail "docker stop took $stop_ms ms, the whole grace period"
for _ in $(seq 1 50); do "$DOCKER" inspect "$container" >/dev/null 2>&1 || break; sleep 0.1; done
"$DOCKER" inspect "$container" >/dev/null 2>&1 && fail "--rm did not remove the container"
container=""
say "docker stop: exit code 0 after $stop_ms ms (grace period ${grace} s)"

# The logs: the start links name SITEURL; no other line holds the key.
wait "$logs_pid" || true
logs_pid=""
grep -qx "Try $site/line.html?apikey=$apikey#generate_leaf" "$work/logs" || fail "no start link in the logs"
grep -qx "Try $site/line.html?apikey=$apikey&mobile=1#generate_leaf" "$work/logs" || fail "no mobile start link in the logs"
[ "$(grep -cF "$apikey" "$work/logs")" -eq 2 ] || fail "the key is in the logs beyond the two start links"
grep -q 'stopped' "$work/logs" || fail "no 'stopped' in the logs"
say "docker logs: the two start links hold the key, none of the other $(($(wc -l <"$work/logs") - 2)) lines"

echo "docker-test: $($full && echo 'docker build .' || echo "the Dockerfile's runtime stage around dist/line-server"), run as the README runs it: all checks passed in $(($(date +%s) - t0)) s"
