# line's recipes. `just` alone lists them; `just run` and `just test` are the two a newcomer needs.

set shell := ["bash", "-euo", "pipefail", "-c"]

port := env_var_or_default("PORT", "7777")

# The wasm test runner gives a whole test binary 20 s by default; the jitter simulations play
# minutes of audio on a virtual clock, which takes longer unoptimised on a slow machine.
export WASM_BINDGEN_TEST_TIMEOUT := env_var_or_default("WASM_BINDGEN_TEST_TIMEOUT", "240")

# List the recipes
default:
    @just --list

# Install what is missing (wasm target, wasm-pack, wasm-bindgen CLI, Chromium + chromedriver, Firefox ESR + geckodriver + PulseAudio, WebKitGTK's WebDriver + Xvfb, Node, nginx); idempotent
setup:
    scripts/setup.sh

# Build the wasm client into www/pkg, then the release server (which embeds www/) into dist/line-server
build:
    scripts/release.sh

# The self-contained release binary, dist/line-server, exactly as the Dockerfile builds it
release: build

# Start the server on http://127.0.0.1:7777 with a fresh API key and print the link to open
run: setup build
    ./target/release/line-server --bind 127.0.0.1 --port {{port}}

# Run every test: native, wasm in headless Chromium and Firefox, the `just run` smoke test, end to end (Chromium, Firefox, WebKit), calls across impaired networks
test: setup build
    cargo test --workspace
    node --test client-wasm/tests/ring.test.mjs
    CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-protocol --target wasm32-unknown-unknown
    wasm-pack test --headless --chrome --mode no-install client-wasm
    wasm-pack test --headless --firefox --mode no-install client-wasm
    scripts/smoke-run.sh
    scripts/image-contract.sh
    scripts/docker-test.sh
    just e2e
    just test-network

# Deployment only (`test` runs these too): nginx (TLS, scale-out) in front of line-server; dist/line-server run as the image runs it; the image built and run by Docker (after `just build`)
test-deploy:
    cargo test -p line-server --test deploy
    scripts/image-contract.sh
    scripts/docker-test.sh

# The Dockerfile's runtime stage built around dist/line-server (after `just build`) and run by Docker exactly as README's run line, every check through the published port (about 65 s; base images made offline when they cannot be pulled)
test-docker:
    scripts/docker-test.sh

# The whole `docker build .` (compiles everything inside the image, not in `just test`), then the same checks as test-docker
test-docker-build:
    scripts/docker-test.sh --full

# End to end: real calls through the real server between two headless Chromium browsers, between Chromium, Firefox and WebKit (a representative set of pairings), over WebTransport (Chromium, Firefox, a mixed call, the fallback when UDP is blocked), and between one browser and a native tone peer for fidelity (after `just build`); one test file at a time, each given 10 minutes (the calls file takes about 4 on an idle machine, more when it measures again on a loaded one), and ended with every process it started when it takes longer
e2e:
    cargo build --release --locked -p line-loadgen
    node --test --test-concurrency=1 --test-timeout=600000 e2e/harness.test.mjs e2e/call.test.mjs e2e/browsers.test.mjs e2e/webtransport.test.mjs e2e/fidelity.test.mjs e2e/long.test.mjs

# Impaired networks, behaviour only (root; about 3 minutes, after `just build`): a real call between two native tone peers through the real server, over a WebSocket and over WebTransport datagrams, across line-netem's lan, home, wifi and mobile profiles and a 2 s outage in each; figures under "network" in target/e2e/results.json
test-network:
    cargo build --release --locked -p line-loadgen -p line-netem
    node --test --test-concurrency=1 --test-timeout=300000 e2e/network.test.mjs

# Every pairing of Chromium, Firefox and WebKit (with and without shared memory) at 200 and 48 kHz, about 6 minutes (after `just build`); figures under "browsers" in target/e2e/results.json
test-browsers:
    LINE_BROWSER_MATRIX=full node --test --test-concurrency=1 --test-timeout=600000 e2e/browsers.test.mjs

# Where a browser's time goes in a call: per-thread CPU and the engine worker's V8 profile (after `just build`)
profile-browser params="studio=1" seconds="10":
    node e2e/profile.mjs "{{params}}" {{seconds}}

# Check formatting and run clippy with warnings denied, natively and for wasm32
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p line-client --target wasm32-unknown-unknown --all-targets -- -D warnings
    cargo clippy -p line-protocol --target wasm32-unknown-unknown --lib --tests -- -D warnings
    cargo clippy -p line-playout --target wasm32-unknown-unknown --features module --lib -- -D warnings
    cargo clippy -p line-protocol --no-default-features -- -D warnings

# Format the code
fmt:
    cargo fmt --all

# Build the API docs with warnings denied
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Run every benchmark and print the summary table (figures, never a pass/fail): frame crypto natively and in headless Chromium beside WebCrypto, the jitter buffer, the lossless frame coder natively and in Chromium, the relay comparison (LINE_BENCH_SOAK_SECS=0 skips its 10-minute soak), then real calls for browser CPU and mouth-to-ear latency (Chromium, and every pairing with Firefox and WebKit), after every build
bench: build
    mkdir -p target/bench
    cargo bench -p line-protocol --bench sframe
    cargo bench -p line-protocol --bench jitter
    cargo bench -p line-protocol --bench lossless
    CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-protocol --release --target wasm32-unknown-unknown --test wasm_bench -- --include-ignored --nocapture | tee target/bench/wasm-crypto.txt
    CHROMEDRIVER=/usr/bin/chromedriver cargo test -p line-protocol --release --target wasm32-unknown-unknown --test wasm_lossless_bench -- --include-ignored --nocapture | tee target/bench/wasm-lossless.txt
    just bench-relay
    cargo test --release -p line-server --test it asset_flood_figures -- --ignored --nocapture 2>&1 | tee target/bench/assets.txt
    -LINE_LONG_CALL_SECONDS=600 just e2e
    -just test-browsers
    -just bench-network
    -just bench-latency
    node scripts/bench-summary.mjs

# Impaired networks, measured (root; about 20 minutes, after `just build`): Chromium on each line-netem profile calls the native tone peer beside the server, 60 s at 200 and at 48 kHz, over a WebSocket and over WebTransport, audio losslessly coded (LINE_NETWORK_PROFILES, LINE_NETWORK_RATES, LINE_NETWORK_TRANSPORTS, LINE_NETWORK_CODINGS=lossless,pcm for raw PCM beside it, LINE_NETWORK_MIC_NOISE, LINE_NETWORK_BENCH_SECONDS); mouth to ear p50/p95, concealed frames and ms a minute, underruns, in target/bench/network.json
bench-network:
    cargo build --release --locked -p line-netem -p line-loadgen
    node e2e/network-bench.mjs

# Mouth to ear (clicks measured beside the engine's estimate) and CPU, before (`&playout=worker`) and after (the default), in one run (root; about 30 minutes, after `just build`): two Chromium browsers, one on each line-netem profile and one beside the server, at 200 kHz, 48 kHz, 2.5 ms frames and over WebTransport (LINE_LATENCY_PROFILES, LINE_LATENCY_CALLS, LINE_LATENCY_PLAYOUTS, LINE_LATENCY_SECONDS); target/bench/latency.json and latency.md
bench-latency:
    cargo build --release --locked -p line-netem
    node e2e/latency-bench.mjs

# Relay capacity, latency and memory: line-server against a Node `ws` relay and a raw-TCP relay (LINE_BENCH_SOAK_SECS=0 skips the 10-minute soak)
bench-relay:
    scripts/bench-relay.sh

# The jitter buffer's two hour-long clock-drift simulations, optimised (about 30 s once built)
test-drift-hour:
    cargo test -p line-protocol --release --test jitter_drift -- --include-ignored --nocapture

# Fuzz header parsing, payload decoding and the full decrypt path, SECONDS each (installs cargo-fuzz)
fuzz seconds="30":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd protocol/fuzz
    for target in header payload decrypt; do
        cargo +nightly fuzz run "$target" -- -max_total_time={{seconds}}
    done

# Everything CI runs: the tests, formatting, clippy (native and wasm32), docs
ci: test lint doc
