#!/usr/bin/env bash
# Builds the self-contained release: the wasm client into www/pkg, then the release server, which
# embeds www/ (wasm bundle included), copied to dist/line-server. `just build` and the Dockerfile's
# build stage both run this, so the image is built by the very steps CI tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/check-wasm-bindgen.sh
wasm-pack --quiet build client-wasm --target web --out-dir ../www/pkg --mode no-install --release --no-pack
# Embedded assets are read at compile time: the bundle must exist before the server is built.
test -f www/pkg/line_client_bg.wasm || { echo "release: www/pkg has no wasm bundle" >&2; exit 1; }
cargo build --release --locked -p line-server
mkdir -p dist
install -m 0755 target/release/line-server dist/line-server
echo "release: dist/line-server ($(du -h dist/line-server | cut -f1), assets embedded)"
