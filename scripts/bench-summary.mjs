// The summary table `just bench` ends with: every figure of BENCHMARKS.md's Goals next to its
// goal, read from what the benchmarks just wrote (criterion's estimates, the wasm bench's table, the relay
// comparison's JSON, the e2e suite's results). A benchmark, not a test: it never fails on a
// number, and a source that did not run shows as "not run".
import { existsSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const at = (...p) => path.join(root, ...p);
const json = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null);
const fixed = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');

/** Criterion's median for one benchmark, in microseconds. */
function criterionMicros(group, bench) {
  const estimates = json(at('target/criterion', group, bench.replaceAll('>', '_'), 'new/estimates.json'));
  return estimates ? estimates.median.point_estimate / 1000 : null;
}

/** The wasm bench's table rows (lines starting "| "), as arrays of cells. */
function wasmRows() {
  const file = at('target/bench/wasm-crypto.txt');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('| ---') && !l.startsWith('|---'))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
}

/** The "× real time" of the first wasm row whose name matches, as a number. */
function wasmTimesRealTime(rows, pattern) {
  const row = rows.find((r) => pattern.test(r[0]));
  if (!row) return null;
  const cell = row.find((c) => /×\s*$/.test(c)) ?? row[row.length - 1];
  return Number.parseFloat(cell.replace(/[^\d.]/g, ''));
}

const rows = [];
const add = (figure, goal, measured, met, source) =>
  rows.push([figure, goal, measured, met === null ? 'n/a' : met ? 'met' : '**missed**', source]);

// Crypto, natively (criterion) and in the browser (wasm bench).
const native = criterionMicros('10ms_mono_200kHz', 'encrypt+decrypt');
add('crypto, native: seal + open a 10 ms 200 kHz frame', '≥ 1000× real time',
  native ? `${fixed(native, 2)} µs = ${fixed(10_000 / native, 0)}×` : 'not run',
  native ? 10_000 / native >= 1000 : null, '`cargo bench -p line-protocol --bench sframe`');
const wasm = wasmRows();
const ours = wasmTimesRealTime(wasm, /line|rustcrypto|aes-gcm|sframe/i);
const webcrypto = wasmTimesRealTime(wasm, /webcrypto/i);
add('crypto, wasm in headless Chromium (same frames)', '≥ 100× real time',
  ours ? `${fixed(ours, 0)}×${webcrypto ? `; WebCrypto ${fixed(webcrypto, 0)}×` : ''}` : 'not run',
  ours ? ours >= 100 : null, 'wasm bench, `target/bench/wasm-crypto.txt`');
const pull = criterionMicros('jitter_pull_10ms', '200000->200000');
add('jitter buffer pull, 10 ms at 200 kHz (native)', '(no goal)',
  pull ? `${fixed(pull, 1)} µs = ${fixed(pull / 100, 2)} % of a core` : 'not run', null,
  '`cargo bench -p line-protocol --bench jitter`');

// The relay comparison.
const relay = json(at('target/bench/relay.json'));
if (relay) {
  const cap = Object.fromEntries(relay.ramps.map((r) => [r.target, r]));
  const capText = (r) => (r ? `${r.capacity}${r.capacity_is_lower_bound ? '+' : ''}` : '?');
  const g = relay.goals;
  add('relay capacity (calls at p99 ≤ 2 ms, no loss): line / Node ws / raw TCP', 'line ≥ 2× Node ws',
    `${capText(cap.line)} / ${capText(cap['node-ws'])} / ${capText(cap.tcp)}${g.capacity_ratio ? ` = ${fixed(g.capacity_ratio, 2)}×` : ''}`,
    g.capacity_ratio == null ? null : g.capacity_ratio >= 2, '`just bench-relay`');
  const same = relay.same_load;
  add(`relay latency at the same load (${same.calls} calls), line / raw TCP, p50 and p99`, 'p99 ≤ 1.5×',
    `${fixed(same.line.latency.p50_us, 0)} / ${fixed(same.tcp.latency.p50_us, 0)} µs; ${fixed(same.line.latency.p99_us, 0)} / ${fixed(same.tcp.latency.p99_us, 0)} µs = ${fixed(g.p99_ratio_vs_tcp, 2)}×`,
    Number.isFinite(g.p99_ratio_vs_tcp) ? g.p99_ratio_vs_tcp <= 1.5 : null, 'same');
  add('line-server memory per active call', '≤ 200 KB', `${fixed(g.kib_per_call, 1)} KiB`,
    g.kib_per_call * 1.024 <= 200, 'same');
  const soak = relay.soak;
  add('line-server memory growth over the soak', 'none',
    soak ? `${soak.growth_kib} KiB over ${fixed(soak.run.measure_secs, 0)} s, ${soak.calls} calls` : 'not run',
    soak ? soak.growth_kib <= 0.05 * soak.first_rss_kib : null, 'same');
} else {
  add('relay comparison', 'see BENCHMARKS.md, Goals', 'not run', null, '`just bench-relay`');
}

// A real call between two browsers (the e2e suite).
const e2e = json(at('target/e2e/results.json'));
const call = (label) => e2e?.[label];
const c200 = call('studio-200k');
add('browser CPU, one peer of a 200 kHz call (whole process tree)', '≤ 15 % of a core',
  c200?.cpuPercentOfCore ? `${fixed(c200.cpuPercentOfCore.a)} % / ${fixed(c200.cpuPercentOfCore.b)} %` : 'not run',
  c200?.cpuPercentOfCore ? Math.max(c200.cpuPercentOfCore.a, c200.cpuPercentOfCore.b) <= 15 : null,
  '`just e2e`, `target/e2e/results.json`');
for (const [label, goal, limit] of [['studio-200k', '≤ 30 ms', 30], ['studio-48k', '≤ 30 ms', 30],
  ['studio-200k-2.5ms', '≤ 20 ms', 20]]) {
  const c = call(label);
  const m = c?.mouthToEarMs;
  add(`mouth to ear p50, ${label} (${c?.frameMs ? `${c.frameMs} ms frames` : ''}), estimated`, goal,
    m ? `${fixed(m.p50, 0)} ms (settled half ${fixed(m.laterP50, 0)}; device ${fixed(c.outputLatencyMs)}, jitter buffer ${fixed(c.jitterMs.depth, 0)} ms)` : 'not run',
    m ? m.p50 <= limit : null, 'same');
  // Clicks timed at the sender's microphone and the receiver's ear, beside the engine's estimate
  // over the same seconds (another call at the same settings, e2e/lib/latency.mjs).
  const clicks = c?.mouthToEarMeasured;
  const way = (w) => `${fixed(w.measured.p50)} / ${fixed(w.measured.p95)} ms (est. ${fixed(w.estimated.p50)} / ${fixed(w.estimated.p95)})`;
  add(`mouth to ear p50 / p95, ${label}, measured with clicks A→B, B→A (estimated)`, goal,
    clicks ? `${way(clicks.aToB)}, ${way(clicks.bToA)}; estimate off by ${fixed(clicks.meanOffMs)} ms` : 'not run',
    clicks ? Math.max(clicks.aToB.measured.p50, clicks.bToA.measured.p50) <= limit : null, 'same');
}

// Fidelity: what a page plays against what a native peer sent (e2e/fidelity.test.mjs), and a
// long call between two browsers (e2e/long.test.mjs).
const fidelity = e2e?.fidelity;
for (const label of ['200k', '48k']) {
  const f = fidelity?.[label];
  const clean = f?.pageHears.filter((b) => b.atS >= 15 && Object.values(b.counted).every((v) => v === 0)) ?? [];
  const worst = Math.max(...clean.flatMap((b) => b.errorPpm.map(Math.abs)));
  const snr = Math.min(...clean.map((b) => b.snrDb));
  add(`what the page hears from the tone peer, ${label}: pitch error, SNR (blocks with nothing counted)`, '≤ 20 ppm, ≥ 85 dB',
    f ? `${fixed(worst, 3)} ppm, ${fixed(snr, 1)} dB in ${clean.length} of ${f.pageHears.length} blocks` : 'not run',
    f && clean.length ? worst <= 20 && snr >= 85 : null, '`just e2e`, `target/e2e/results.json`');
  add(`glitches a minute, ${label} (all counted by the engine)`, '0 on a quiet machine',
    f ? fixed(f.glitchesPerMinute, 1) : 'not run', f ? f.glitchesPerMinute === 0 : null, 'same');
}
const long = e2e?.longCall;
const after = long?.afterSettling;
add(`${long ? long.seconds : ''} s two-browser call after ${long?.settleS ?? ''} s: playback xruns, underruns, edits (A / B)`, 'no xruns, no underruns',
  after ? `${after.a.playbackXruns} / ${after.b.playbackXruns} samples, ${after.a.underruns} / ${after.b.underruns}, ${after.a.edits} / ${after.b.edits}` : 'not run',
  after ? after.a.playbackXruns + after.b.playbackXruns + after.a.underruns + after.b.underruns === 0 : null,
  '`just e2e` (LINE_LONG_CALL_SECONDS), `target/e2e/results.json`');
add('same call: the other side played off nominal speed, worst (A / B)', '≤ 20 ppm',
  long ? `${fixed(long.worstResampleRatioPpm.a)} / ${fixed(long.worstResampleRatioPpm.b)} ppm` : 'not run',
  long ? Math.max(long.worstResampleRatioPpm.a, long.worstResampleRatioPpm.b) <= 20 : null, 'same');

// Calls across engines (e2e/browsers.test.mjs; every pairing with `just test-browsers`): each
// side's CPU and mouth to ear beside Chromium's above.
for (const [label, c] of Object.entries(e2e?.browsers ?? {})) {
  if (!c.mouthToEarMs) continue;
  add(`${label}: CPU A / B, mouth to ear p50 A / B`, '(beside Chromium\'s)',
    `${fixed(c.cpuPercentOfCore.a)} / ${fixed(c.cpuPercentOfCore.b)} %, ${fixed(c.mouthToEarMs.a, 0)} / ${fixed(c.mouthToEarMs.b, 0)} ms (${c.a} / ${c.b})`,
    null, '`just test-browsers`, `target/e2e/results.json`');
}

// Calls across impaired networks (e2e/network-bench.mjs): Chromium on the impaired side, the
// native tone peer beside the server, both on one transport; each side's estimate of what it hears.
for (const c of json(at('target/bench/network.json'))?.calls ?? []) {
  const side = (h) => `${fixed(h.mouthToEarP50Ms, 0)} / ${fixed(h.mouthToEarP95Ms, 0)} ms, ${fixed(h.concealedMsPerMinute ?? h.concealedFramesPerMinute)} ${h.concealedMsPerMinute === undefined ? 'concealed/min' : 'ms concealed/min'}, ${h.underruns} underruns`;
  add(`network "${c.profile}", ${c.rate}${c.transport ? `, ${c.transport} (${c.frameMs} ms frames)` : ''}${c.coding ? `, ${c.coding}` : ''}: mouth to ear p50 / p95, glitches — browser hears; peer hears${c.browserSendMbps === undefined ? '' : '; browser sends'}`,
    // The mouth-to-ear goal is set for a quiet local network; the impaired profiles are reported.
    c.profile === 'lan' ? '≤ 30 ms p50 (10 ms frames)' : '(reported)',
    `${side(c.browserHears)}; ${side(c.peerHears)}${c.browserSendMbps === undefined ? '' : `; ${c.browserSendMbps} Mbit/s`}`,
    c.profile === 'lan' ? Math.max(c.browserHears.mouthToEarP50Ms, c.peerHears.mouthToEarP50Ms) <= 30 : null,
    '`just bench-network`, `target/bench/network.json`');
}

const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...[['figure', 'goal', 'measured', 'goal met', 'from'], ...rows].map((r) => r[i].length)));
const line = (r) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log(`\ngoals summary (load average now ${loadavg().map((l) => l.toFixed(1)).join(' ')}; machine: ${readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown'}, ${(await import('node:os')).cpus().length} CPUs)`);
console.log(line(['figure', 'goal', 'measured', 'goal met', 'from']));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of rows) console.log(line(r));
