# line's recipes. `just` alone lists them; `just run` and `just test` are the two a newcomer needs.

set shell := ["bash", "-euo", "pipefail", "-c"]

port := env_var_or_default("PORT", "7777")

# List the recipes
default:
    @just --list

# Install what is missing (wasm target, wasm-pack, wasm-bindgen CLI, Chromium + chromedriver); idempotent
setup:
    scripts/setup.sh

# Build the wasm client into www/pkg, then the release server (which embeds www/)
build:
    scripts/check-wasm-bindgen.sh
    wasm-pack --quiet build client-wasm --target web --out-dir ../www/pkg --mode no-install --release --no-pack
    cargo build --release -p line-server

# Start the server on http://127.0.0.1:7777 with a fresh API key and print the link to open
run: setup build
    ./target/release/line-server --bind 127.0.0.1 --port {{port}} --www www

# Run every test: native, wasm in headless Chromium, and the `just run` smoke test
test: setup build
    cargo test --workspace
    CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-protocol --target wasm32-unknown-unknown
    wasm-pack test --headless --chrome --mode no-install client-wasm
    scripts/smoke-run.sh

# Check formatting and run clippy with warnings denied, natively and for wasm32
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p line-protocol -p line-client --target wasm32-unknown-unknown -- -D warnings

# Format the code
fmt:
    cargo fmt --all

# Build the API docs with warnings denied
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Run the benchmarks (figures go into BENCHMARKS.md by hand; never a pass/fail)
bench:
    cargo bench -p line-protocol

# Fuzz each target for a bounded time (SECONDS each, default 30); needs nightly and cargo-fuzz
fuzz seconds="30":
    @echo "no fuzz targets yet"

# Everything CI runs: the tests, formatting, clippy (native and wasm32), docs
ci: test lint doc
