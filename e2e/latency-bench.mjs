// Mouth to ear and CPU, before and after, in one run: two headless Chromium browsers call each
// other through the real server for every network profile and call setting, once with the jitter
// buffer in the engine's worker (`&playout=worker`, the path before playout moved to the audio
// thread) and once with the default (`&playout=worklet`), the two calls of a pair back to back so
// the machine's mood is shared. Each call: clicks in both microphones, measured mouth to ear at
// the receiver's remote node (e2e/lib/latency.mjs) beside the engine's estimate, both ways; CPU
// of each browser's process tree; concealed audio and underruns a minute.
//
// A is on the near side of line-netem (every packet to the server crosses the profile), B beside
// the server; "loopback" puts A beside the server too (no line-netem on the way). Reported, never
// judged; written to target/bench/latency.json and as a Markdown table to target/bench/latency.md.
// Needs root, `just build` and `cargo build --release -p line-netem`.
//
//   node e2e/latency-bench.mjs      every profile and setting (about 25 minutes)
//   LINE_LATENCY_PROFILES=loopback,wifi LINE_LATENCY_CALLS=200k,48k LINE_LATENCY_SECONDS=15 \
//     node e2e/latency-bench.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchPerson } from './lib/browser.mjs';
import { cpuMeter } from './lib/cpu.mjs';
import { clickGaps, mouthToEar, rateErrorPpm, spread, startClicks, stopClicks } from './lib/latency.mjs';
import { chromiumIn, startNetwork } from './lib/netem.mjs';
import { percentile, stats, waitState } from './lib/page.mjs';
import { seededRandom } from './lib/seed.mjs';
import { repoRoot, startServer } from './lib/server.mjs';
import { writeClicks } from './lib/wav.mjs';

const OUT = path.join(repoRoot, 'target/bench');
const PROFILES = (process.env.LINE_LATENCY_PROFILES ?? 'loopback,lan,home,wifi,mobile').split(',');
/** The call settings: the link's parameters. WebSocket unless said: the audio path's own latency,
 *  without the transport's (`just bench-network` compares the transports). */
const CALLS = [
  { label: '200k', params: 'studio=1&transport=websocket' },
  { label: '48k', params: 'studio=1&mobile=1&transport=websocket' },
  { label: '200k-2.5ms', params: 'studio=1&frame=2.5&transport=websocket' },
  // The page's default transport where the browser has it: datagrams of 2.5 ms at 200 kHz.
  { label: '200k-webtransport', params: 'studio=1' },
].filter((c) => (process.env.LINE_LATENCY_CALLS ?? '200k,48k,200k-2.5ms,200k-webtransport').split(',').includes(c.label));
const PATHS = [
  { label: 'before', params: 'playout=worker' },
  { label: 'after', params: 'playout=worklet' },
].filter((p) => (process.env.LINE_LATENCY_PLAYOUTS ?? 'before,after').split(',').includes(p.label));
/** Measured, seconds: shorter than the click train (about 25 s), so every click is one of a kind. */
const SECONDS = Math.min(Number(process.env.LINE_LATENCY_SECONDS ?? 20), 22);
/** The first seconds of a call are its jitter buffer learning the network. */
const SETTLE_S = Number(process.env.LINE_LATENCY_SETTLE_SECONDS ?? 4);
/** CPU is measured over this many seconds after settling, before the clicks. */
const CPU_S = 6;
/** The goals (BENCHMARKS.md, "Goals"): mouth to ear p50 at 10 ms and at 2.5 ms frames, CPU. */
const GOALS = { p50Ms: 30, p50MsShortFrames: 20, cpuPercent: 15 };
const PORT = 7778;

mkdirSync(OUT, { recursive: true });
const random = seededRandom('latency-bench');
const clicks = ['a', 'b'].map((who) => {
  const wav = path.join(OUT, `latency-clicks-${who}.wav`);
  writeClicks(wav, { gapsMs: clickGaps(random) });
  return wav;
});
const round = (x) => Math.round(10 * x) / 10;

/** Concealed milliseconds a minute and underruns between two stats readings of one page. */
function glitches(s0, s1, seconds) {
  const rate = s1.wireRate || 48_000;
  return {
    concealedMsPerMinute: round(((s1.samplesConcealed - s0.samplesConcealed) / rate) * 1000 * (60 / seconds)),
    underruns: s1.underruns - s0.underruns,
  };
}

async function callOnce(network, server, profile, call, playout) {
  const origin = `http://${network.farAddr}:${PORT}`;
  const leaf = `leaf_${randomBytes(32).toString('base64url')}`;
  const link = `${origin}/line.html?apikey=${server.apikey}&${call.params}&${playout.params}#${leaf}`;
  const nsOf = { a: profile === 'loopback' ? network.far : network.near, b: network.far };
  const launch = (who, i) => launchPerson(`${profile}-${call.label}-${playout.label}-${who}`, {
    wav: clicks[i],
    executablePath: chromiumIn(nsOf[who], OUT),
    // A page from a plain-HTTP address is not a secure context: no microphone, no worklet.
    args: [`--unsafely-treat-insecure-origin-as-secure=${origin}`],
  });
  const [a, b] = [await launch('a', 0), await launch('b', 1)];
  try {
    await a.page.goto(link);
    await waitState(a, 'ready');
    await a.page.click('#join');
    await waitState(a, 'waiting');
    await b.page.goto(link);
    await waitState(b, 'ready');
    await b.page.click('#join');
    await waitState(b, 'in-call', 30_000);
    await waitState(a, 'in-call', 30_000);
    await sleep(SETTLE_S * 1000);
    // CPU over a window where nothing but the call runs: the clicks' taps and the polling of
    // statistics below cost the browsers CPU of their own.
    const cpu = [cpuMeter(a.pid), cpuMeter(b.pid)];
    await sleep(CPU_S * 1000);
    const [cpuA, cpuB] = cpu.map((m) => m.stop());
    const s0 = [await stats(a), await stats(b)];
    await Promise.all([a, b].map((p) => startClicks(p.page)));
    const t0 = Date.now();
    // The jitter buffer's state every second, each side, for a look at how the call moves.
    const timeline = { a: [], b: [] };
    while (Date.now() - t0 < SECONDS * 1000) {
      await sleep(1000);
      for (const [who, p] of [['a', a], ['b', b]]) {
        const s = await stats(p);
        timeline[who].push([round((Date.now() - t0) / 1000), round(s.mouthToEarMs), round(s.jitterDepthMs), round(s.jitterTargetMs),
          round(s.arrivalJitterMs), round(s.driftPpm), round(s.resampleRatioPpm), s.edits]);
      }
    }
    const [ra, rb] = await Promise.all([a, b].map((p) => stopClicks(p.page)));
    const seconds = (Date.now() - t0) / 1000;
    const s1 = [await stats(a), await stats(b)];
    // B's estimate is of what A sends, and A's of what B sends.
    const way = (from, to) => {
      const clicks = mouthToEar(from, to);
      const { delays, heard } = clicks;
      // The estimate every 100 ms and each matched click's delay, for a look at how a call moves.
      const series = { estimates: to.estimates.map(round), clicks: delays.map(round) };
      return { measured: spread(delays), estimated: spread(to.estimates), heard, rateErrorPpm: rateErrorPpm(clicks), series };
    };
    // What the receiver's jitter buffer aimed at, p50 over the window (the largest term).
    const targetMs = (t) => round(percentile(t.map((x) => x[3]), 50));
    await a.page.click('#hangup');
    return {
      profile, call: call.label, playout: playout.label,
      transport: { a: s1[0].transport, b: s1[1].transport },
      frameMs: { a: s1[0].frameMs, b: s1[1].frameMs },
      aToB: { ...way(ra, rb), ...glitches(s0[1], s1[1], seconds), jitterTargetMs: targetMs(timeline.b) },
      bToA: { ...way(rb, ra), ...glitches(s0[0], s1[0], seconds), jitterTargetMs: targetMs(timeline.a) },
      cpuPercent: { a: round(cpuA.total), b: round(cpuB.total) },
      cpuThreads: { a: cpuA.threads, b: cpuB.threads },
      deviceMs: { a: round(ra.deviceMs), b: round(rb.deviceMs) },
      // [s, mouth to ear, depth, target, arrival jitter (ms), drift, resampling (ppm), edits]
      timeline,
      contextRate: ra.rate,
    };
  } catch (e) {
    for (const p of [a, b]) console.error(`${p.name}:\n${p.console.slice(-15).join('\n')}`);
    throw e;
  } finally {
    await a.close();
    await b.close();
  }
}

/**
 * What a browser costs before line does anything, in the same run: one Chromium beside the server
 * with line's page open (not in a call), then its microphone played to its speaker through an
 * AudioWorklet (the shape of line's audio path, no engine, no network) with the smallest buffer
 * (`latencyHint` 0, what line asks for at the device's rate) and with `"interactive"`.
 */
async function browserFloor(network, server) {
  const origin = `http://${network.farAddr}:${PORT}`;
  const p = await launchPerson('floor', {
    wav: clicks[0],
    executablePath: chromiumIn(network.far, OUT),
    args: [`--unsafely-treat-insecure-origin-as-secure=${origin}`],
  });
  const cpuOver = async () => {
    const m = cpuMeter(p.pid);
    await sleep(CPU_S * 1000);
    const c = m.stop();
    return { percent: round(c.total), threads: c.threads };
  };
  try {
    await p.page.goto(`${origin}/line.html?apikey=${server.apikey}#leaf_${randomBytes(32).toString('base64url')}`);
    await waitState(p, 'ready');
    await sleep(2000);
    const floor = { pageOpen: await cpuOver() };
    for (const hint of [0, 'interactive']) {
      const opened = await p.page.evaluate(async (latencyHint) => {
        await window.__floor?.ctx.close();
        const ctx = new AudioContext({ latencyHint });
        const mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
        await ctx.audioWorklet.addModule('/e2e-tap.js');
        const node = new AudioWorkletNode(ctx, 'line-onsets', { processorOptions: { threshold: 2, quiet: 1 } });
        ctx.createMediaStreamSource(mic).connect(node).connect(ctx.destination);
        await ctx.resume();
        window.__floor = { ctx };
        return { rate: ctx.sampleRate, deviceMs: 1000 * (ctx.baseLatency + ctx.outputLatency) };
      }, hint);
      await sleep(1000);
      floor[hint === 0 ? 'audioSmallestBuffer' : 'audioInteractive'] = { ...opened, ...(await cpuOver()) };
    }
    return floor;
  } finally {
    await p.close();
  }
}

/** One row of the table: both directions' measured and estimated p50/p95, the receiver's jitter
 *  target, glitches, and CPU. */
function row(r) {
  // A direction that lost most of its audio matches no click: no figure, not NaN.
  const f = (x) => (Number.isFinite(x) ? x : '–');
  const dir = (w) => `${f(w.measured.p50)} / ${f(w.measured.p95)} (${w.measured.n}) | ${f(w.estimated.p50)} | ${f(w.jitterTargetMs)} | ${w.concealedMsPerMinute}`;
  return `| ${r.profile} | ${r.call} | ${r.playout} | ${dir(r.aToB)} | ${dir(r.bToA)} | ${r.cpuPercent.a} / ${r.cpuPercent.b} |`;
}

function table(calls) {
  const dir = (w) => `${w} measured p50 / p95 ms (clicks) | ${w} estimated p50 | ${w} jitter target p50 | ${w} concealed ms/min`;
  return [
    `Goals: mouth to ear p50 <= ${GOALS.p50Ms} ms at 10 ms frames and <= ${GOALS.p50MsShortFrames} ms at 2.5 ms frames (idle machine, `
      + `loopback); <= ${GOALS.cpuPercent} % of a core per browser at 200 kHz. A is on the profile's side of the link, B beside the server; `
      + 'before: `&playout=worker`, after: the default.',
    '',
    `| profile | call | playout | ${dir('A→B')} | ${dir('B→A')} | CPU A / B % |`,
    `|${'---|'.repeat(12)}`,
    ...calls.map(row),
  ].join('\n');
}

const network = await startNetwork({ profile: 'lan', seed: Math.floor(random() * 2 ** 32) });
const server = await startServer({ netns: network.far, bind: network.farAddr, port: PORT, webtransport: true });
const results = { seed: random.seed, seconds: SECONDS, settleSeconds: SETTLE_S, goals: GOALS, calls: [] };
try {
  results.browserFloor = await browserFloor(network, server);
  console.log(`latency: one browser before line does anything: ${JSON.stringify(results.browserFloor, (k, v) => (k === 'threads' ? undefined : v))}`);
  for (const profile of PROFILES) {
    await network.command(`profile ${profile === 'loopback' ? 'lan' : profile}`);
    for (const call of CALLS) {
      for (const playout of PATHS) {
        const r = await callOnce(network, server, profile, call, playout);
        results.calls.push(r);
        console.log(`latency ${profile} ${call.label} ${playout.label}: ${JSON.stringify(r, (k, v) => (k === 'series' || k === 'cpuThreads' || k === 'timeline' ? undefined : v))}`);
        writeFileSync(path.join(OUT, 'latency.json'), JSON.stringify(results, null, 2));
      }
    }
  }
} finally {
  await server.stop();
  await network.stop();
}
const f = results.browserFloor;
const md = `${table(results.calls)}\n\nOne browser before line does anything (same run): line's page open ${f.pageOpen.percent} % of a core; `
  + `its microphone through an AudioWorklet to its speaker at ${f.audioSmallestBuffer.rate} Hz, smallest buffer (${round(f.audioSmallestBuffer.deviceMs)} ms) `
  + `${f.audioSmallestBuffer.percent} %, "interactive" (${round(f.audioInteractive.deviceMs)} ms) ${f.audioInteractive.percent} %.`;
writeFileSync(path.join(OUT, 'latency.md'), `${md}\n`);
console.log(`${md}\n\nlatency bench: target/bench/latency.json, latency.md (seed ${random.seed})`);
