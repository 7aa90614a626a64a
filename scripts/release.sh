#!/usr/bin/env bash
# Builds the self-contained release: the wasm client into www/pkg, then the release server, which
# embeds www/ (wasm bundle included), copied to dist/line-server. `just build` and the Dockerfile's
# build stage both run this, so the image is built by the very steps CI tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/check-wasm-bindgen.sh
# Built beside www/pkg, then copied over only where a file changed: the server embeds www/ and
# rebuilds when a file there is newer, so an unchanged bundle must keep its timestamp.
stage=target/wasm-pkg
wasm-pack --quiet build client-wasm --target web --out-dir "../$stage" --mode no-install --release --no-pack
# The playout module the playback worklet runs (docs/CLIENT.md): plain wasm, no glue.
cargo build --quiet --release --locked -p line-playout --features module --target wasm32-unknown-unknown
cp target/wasm32-unknown-unknown/release/line_playout.wasm "$stage/"
mkdir -p www/pkg
for f in "$stage"/* "$stage"/.gitignore; do
  cmp -s "$f" "www/pkg/${f##*/}" || cp "$f" www/pkg/
done
for f in www/pkg/*; do
  [ -e "$stage/${f##*/}" ] || rm -f "$f"
done
# Embedded assets are read at compile time: the bundle must exist before the server is built.
test -f www/pkg/line_client_bg.wasm || { echo "release: www/pkg has no wasm bundle" >&2; exit 1; }
cargo build --release --locked -p line-server
mkdir -p dist
install -m 0755 target/release/line-server dist/line-server
echo "release: dist/line-server ($(du -h dist/line-server | cut -f1), assets embedded)"
