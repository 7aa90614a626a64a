#!/usr/bin/env bash
# Stops with a clear message when the installed wasm-bindgen CLI is not the version Cargo.lock wants;
# otherwise wasm-pack would quietly try to download a matching one.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(scripts/wasm-bindgen-version.sh)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}') || true
if [ -z "$have" ]; then
  echo "error: the wasm-bindgen CLI is not installed; run 'just setup'." >&2
  exit 1
fi
if [ "$have" != "$want" ]; then
  echo "error: wasm-bindgen CLI $have is installed, but Cargo.lock pins the wasm-bindgen crate to $want." >&2
  echo "       They must be equal. Install the matching CLI:" >&2
  echo "         cargo install wasm-bindgen-cli --version $want --force" >&2
  exit 1
fi
