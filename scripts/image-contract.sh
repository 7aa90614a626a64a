#!/usr/bin/env bash
# Runs dist/line-server (from scripts/release.sh, as the image's build stage makes it) the way the
# Dockerfile's runtime stage and the documented `docker run` line would, without Docker:
#
#   - the ENV, USER, ENTRYPOINT and HEALTHCHECK read from the Dockerfile itself;
#   - a fresh network namespace with net.ipv4.ip_unprivileged_port_start=0, as Docker, Podman and
#     containerd 2 give each container, so the non-root user must bind PORT=443 itself;
#   - a private /tmp with the certificate pair bind-mounted read-only at /tmp/fullchain.pem and
#     /tmp/privkey.pem, as the run line's `-v ...:ro` does;
#   - APIKEY and SITEURL=https://line.example.com as in the run line; no capabilities at all.
#
# Then: the start links name SITEURL, HTTPS on 443 serves the embedded page and wasm bundle with a
# certificate for line.example.com, the HEALTHCHECK command exits 0, and after SIGTERM (STOPSIGNAL)
# the server exits 0 and the HEALTHCHECK exits 1.
#
# It needs no Docker engine; scripts/docker-test.sh builds and runs the image itself with one.
# Needs root for the namespaces; CI runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1; then
    msg="image-contract: needs root and unshare (namespaces stand in for the container)"
    if [ "${CI:-}" = "true" ]; then echo "$msg; CI must run it" >&2; exit 1; fi
    echo "!!!!!!!! SKIPPED: $msg !!!!!!!!" >&2
    exit 0
  fi
  [ -x dist/line-server ] || { echo "image-contract: no dist/line-server: run 'just build' first" >&2; exit 1; }
  # A private tmpfs for the pair and the logs, mounted inside: not under /tmp, which is replaced
  # there (and may hold the checkout itself, as a clone in /tmp does).
  work=$(mktemp -d /run/line-image-contract.XXXXXX)
  status=0
  unshare --mount --net --fork "$0" --inside "$work" || status=$?
  rmdir "$work"
  exit $status
fi

# --- inside the namespaces ---------------------------------------------------------------------
fail() { echo "image-contract: FAIL: $*" >&2; exit 1; }

# The build stage runs the scripts CI runs, nothing of its own.
grep -q '^    scripts/setup.sh --build-only$' Dockerfile || fail "the Dockerfile does not run scripts/setup.sh --build-only"
grep -q '^    scripts/release.sh$' Dockerfile || fail "the Dockerfile does not run scripts/release.sh"

# The runtime stage: everything after the last FROM.
runtime=$(awk '/^FROM /{stage=""} {stage=stage $0 "\n"} END{printf "%s", stage}' Dockerfile)
image_env=$(printf '%s' "$runtime" | sed -n 's/^ENV \([A-Z_][A-Z0-9_]*=[^ ]*\)$/\1/p')
user=$(printf '%s' "$runtime" | sed -n 's/^USER \([0-9]*\):\([0-9]*\)$/\1:\2/p')
entrypoint=$(printf '%s' "$runtime" | sed -n 's/^ENTRYPOINT \["\([^"]*\)"\]$/\1/p')
health=$(printf '%s' "$runtime" | tr -d '\\\n' | sed -n 's/.*HEALTHCHECK.*CMD \["\([^"]*\)", "\([^"]*\)"\].*/\1 \2/p')
copy_dest=$(printf '%s' "$runtime" | sed -n 's|^COPY --from=build /src/dist/line-server \(.*\)$|\1|p')
[ -n "$image_env" ] && [ -n "$user" ] && [ -n "$entrypoint" ] && [ -n "$health" ] \
  || fail "cannot read ENV/USER/ENTRYPOINT/HEALTHCHECK from the Dockerfile's runtime stage"
[ "$copy_dest" = "$entrypoint" ] || fail "the image copies the binary to $copy_dest but runs $entrypoint"
printf '%s\n' "$image_env" | grep -qx 'PORT=443' || fail "the image does not set PORT=443 (the run line publishes 443)"
uid=${user%%:*} gid=${user##*:}
[ "$uid" -ne 0 ] || fail "the image runs as root"

# The container's network: loopback only, low ports open to everyone (Docker's default sysctl).
ip link set lo up
sysctl -qw net.ipv4.ip_unprivileged_port_start=0

# The container's files: the binary at the ENTRYPOINT path and a private /tmp with the pair.
work=$2
mount -t tmpfs tmpfs "$work"
pid=""
# On any failure, the server must not outlive the check (it would keep the namespaces alive).
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=line.example.com \
  -addext subjectAltName=DNS:line.example.com -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
chmod 0644 "$work/privkey.pem"   # the mounted key must be readable by the image's user
bindir=$(dirname "$entrypoint")
mount -t tmpfs tmpfs "$bindir"
install -m 0755 dist/line-server "$entrypoint"
mount -t tmpfs tmpfs /tmp
for f in fullchain.pem privkey.pem; do
  touch "/tmp/$f"
  mount --bind "$work/$f" "/tmp/$f"
  mount -o remount,bind,ro "/tmp/$f"
done

apikey=$("$entrypoint" generate-apikey)
# The image's user, no capabilities (not even in the bounding set), the image's environment.
# shellcheck disable=SC2206
as_image=(setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all
  env -i PATH=/usr/local/bin:/usr/bin:/bin $image_env APIKEY="$apikey" SITEURL=https://line.example.com)
# shellcheck disable=SC2206
health_cmd=($health)

# setpriv and env exec, so $! is line-server itself.
"${as_image[@]}" "$entrypoint" >"$work/stdout" 2>"$work/stderr" &
pid=$!
healthy=false
for _ in $(seq 1 100); do
  if "${as_image[@]}" "${health_cmd[@]}" 2>/dev/null; then healthy=true; break; fi
  kill -0 $pid 2>/dev/null || { cat "$work/stderr" >&2; fail "line-server exited at start"; }
  sleep 0.1
done
$healthy || { cat "$work/stderr" >&2; fail "the HEALTHCHECK never passed"; }

grep -q "Uid:[[:space:]]*$uid[[:space:]]" "/proc/$pid/status" || fail "line-server does not run as uid $uid"
grep -qx "Try https://line.example.com/line.html?apikey=$apikey#generate_leaf" "$work/stdout" \
  || fail "the start link does not name SITEURL: $(cat "$work/stdout")"
https() { curl -fsS --cacert "$work/fullchain.pem" --resolve line.example.com:443:127.0.0.1 "$@"; }
https "https://line.example.com/line.html?apikey=$apikey" | grep -q '<title>line</title>' \
  || fail "the embedded page is not served on 443"
ctype=$(https -o /dev/null -w '%{content_type}' https://line.example.com/pkg/line_client_bg.wasm)
[ "$ctype" = application/wasm ] || fail "the embedded wasm bundle is served as '$ctype'"
https -D - -o /dev/null https://line.example.com/healthz | grep -qi '^strict-transport-security:' \
  || fail "no HSTS on HTTPS"

kill -TERM $pid
status=0
wait $pid || status=$?
[ $status -eq 0 ] || { cat "$work/stderr" >&2; fail "line-server exited $status on SIGTERM"; }
if "${as_image[@]}" "${health_cmd[@]}" 2>/dev/null; then fail "the HEALTHCHECK passes with no server"; fi
grep -q "$apikey" "$work/stderr" && fail "the key is in the logs"

echo "image-contract: dist/line-server ran as the image runs it (uid $uid, $(echo $image_env), no capabilities): start links, embedded page and wasm on 443 with the mounted certificate, HEALTHCHECK 0 then 1 after SIGTERM"
