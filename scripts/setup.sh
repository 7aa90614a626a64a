#!/usr/bin/env bash
# Installs what building and testing line needs and is missing, and says what it did.
# Idempotent: a second run installs nothing and says so. Where it cannot install (not root, not
# Debian/Ubuntu), it prints the exact command for the person to run and stops.
# `--build-only` installs only what `scripts/release.sh` needs (the Dockerfile's build stage): no
# browsers, no Node, no nginx.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=false
[ "${1:-}" = "--build-only" ] && build_only=true

WASM_PACK_VERSION=0.15.1
GECKODRIVER_VERSION=0.37.1
did=()

need_root_apt() {
  # $1: what for; rest: Debian packages.
  local what=$1; shift
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $what ($*) with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    did+=("$what")
  else
    echo "setup: $what is missing and this script cannot install it here." >&2
    echo "       On Debian or Ubuntu run:  sudo apt-get install -y --no-install-recommends $*" >&2
    echo "       Elsewhere install $what with your package manager, then run 'just setup' again." >&2
    exit 1
  fi
}

# 1. The wasm target of the pinned toolchain (rust-toolchain.toml).
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
  did+=("wasm32 target")
fi

# 2. wasm-pack, pinned.
if [ "$(wasm-pack --version 2>/dev/null)" != "wasm-pack $WASM_PACK_VERSION" ]; then
  echo "setup: installing wasm-pack $WASM_PACK_VERSION (about 2 minutes on 2 cores)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked --force --quiet
  did+=("wasm-pack $WASM_PACK_VERSION")
fi

# 3. The wasm-bindgen CLI, exactly the version of the wasm-bindgen crate in Cargo.lock.
want=$(scripts/wasm-bindgen-version.sh)
if ! command -v wasm-bindgen >/dev/null 2>&1; then
  echo "setup: installing wasm-bindgen-cli $want (about 2.5 minutes on 2 cores)"
  # Not --locked: the CLI's own lockfile names a webpki-roots release the registry lacks.
  cargo install wasm-bindgen-cli --version "$want" --quiet
  did+=("wasm-bindgen-cli $want")
fi
scripts/check-wasm-bindgen.sh

if $build_only; then
  echo "setup: build tools ready${did[*]:+ (installed: ${did[*]})}"
  exit 0
fi

# 4. Chromium and its driver for the browser tests, from one apt command so their versions match.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  need_root_apt "Chromium and chromedriver" chromium chromium-driver
fi

# 4b. The other engines for the browser tests: Firefox ESR (driven over WebDriver BiDi), a
#     PulseAudio daemon as its audio output (Firefox starts no audio without one), and WebKitGTK,
#     Safari's engine: its WebDriver, which brings the MiniBrowser, run under a virtual X server.
if ! command -v firefox-esr >/dev/null 2>&1 || ! command -v pulseaudio >/dev/null 2>&1; then
  need_root_apt "Firefox ESR and PulseAudio" firefox-esr pulseaudio
fi
if ! command -v WebKitWebDriver >/dev/null 2>&1 || ! command -v Xvfb >/dev/null 2>&1; then
  need_root_apt "WebKitGTK's WebDriver and Xvfb" webkit2gtk-driver xvfb
fi
# geckodriver, for the client's wasm tests in Firefox (wasm-pack uses the one on PATH rather
# than download one).
if [ "$(geckodriver --version 2>/dev/null | head -n1 | cut -d' ' -f2)" != "$GECKODRIVER_VERSION" ]; then
  echo "setup: installing geckodriver $GECKODRIVER_VERSION (about 2 minutes on 2 cores)"
  cargo install geckodriver --version "$GECKODRIVER_VERSION" --locked --force --quiet
  did+=("geckodriver $GECKODRIVER_VERSION")
fi

# 5. The end-to-end suite's browser drivers (playwright-core for Chromium, puppeteer-core for
#    Firefox; neither downloads a browser), from its lockfile.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  need_root_apt "Node.js and npm" nodejs npm
fi
e2e_stale=false
for pkg in playwright-core puppeteer-core; do
  if [ ! -f "e2e/node_modules/$pkg/package.json" ] \
    || [ "$(node -p "require('./e2e/node_modules/$pkg/package.json').version" 2>/dev/null)" \
         != "$(node -p "require('./e2e/package-lock.json').packages['node_modules/$pkg'].version")" ]; then
    e2e_stale=true
  fi
done
if $e2e_stale; then
  echo "setup: installing the end-to-end suite's drivers (npm ci in e2e/)"
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
  did+=("playwright-core, puppeteer-core")
fi

# 5b. The Node `ws` relay that `just bench-relay` measures line-server against, from its lockfile.
ws_dir=bench/baselines/node-ws
if [ ! -f "$ws_dir/node_modules/ws/package.json" ] \
  || [ "$(node -p "require('./$ws_dir/node_modules/ws/package.json').version" 2>/dev/null)" \
       != "$(node -p "require('./$ws_dir/package-lock.json').packages['node_modules/ws'].version")" ]; then
  echo "setup: installing the Node ws relay baseline (npm ci in $ws_dir/)"
  (cd "$ws_dir" && npm ci --no-audit --no-fund --loglevel=error)
  did+=("ws baseline")
fi

# 6. The deployment tests: a real nginx in front of line-server, envsubst to render its config
#    template, setcap and setpriv to run the release binary as the image does (non-root on port 443).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  need_root_apt "nginx" nginx
fi
# nginx's UDP forwarding for the scale-out's WebTransport: built in, or Debian's dynamic module.
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if ! "$nginx_bin" -V 2>&1 | tr ' ' '\n' | grep -qx -- '--with-stream' \
  && [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  need_root_apt "nginx's stream module" libnginx-mod-stream
fi
if ! command -v envsubst >/dev/null 2>&1; then
  need_root_apt "envsubst" gettext-base
fi
if ! command -v setcap >/dev/null 2>&1 && [ ! -x /usr/sbin/setcap ] || ! command -v setpriv >/dev/null 2>&1; then
  need_root_apt "setcap and setpriv" libcap2-bin util-linux
fi
# 7. The WebTransport fallback test blocks UDP inside its network namespace with iptables (on
#    nftables); network namespaces themselves come with iproute2.
if ! command -v iptables >/dev/null 2>&1 && [ ! -x /usr/sbin/iptables ]; then
  need_root_apt "iptables" iptables
fi

if [ ${#did[@]} -eq 0 ]; then
  echo "setup: nothing to do, everything is installed"
else
  echo "setup: installed $(IFS=,; echo "${did[*]}" | sed 's/,/, /g')"
fi
