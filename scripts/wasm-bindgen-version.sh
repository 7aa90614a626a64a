#!/usr/bin/env bash
# Prints the version of the wasm-bindgen crate that Cargo.lock resolved.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f Cargo.lock ] || cargo generate-lockfile --offline >/dev/null 2>&1 || cargo generate-lockfile >/dev/null
awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
