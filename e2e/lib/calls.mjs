// A call between two people of any engine, measured the same way for each: what each hears, the
// frames that flow, mouth-to-ear latency, CPU, and the pitch of what each plays. A person is what
// browser.mjs, firefox.mjs or webkit.mjs launch: `{ name, engine, pid, page, mic: { freqs,
// amplitude } }`, `page` with the Playwright calls page.mjs uses.
import assert from 'node:assert/strict';
import path from 'node:path';
import { cpuMeter } from './cpu.mjs';
import { hear, percentile, sampleLatency, stats, waitState, withParams } from './page.mjs';
import { analyze, collect, startRecording } from './record.mjs';

/**
 * A opens `link` with `params`, B the link A's page shows; both join. Resolves with both, in
 * call, the shared link, and the seconds from B's click to both in call.
 */
export async function startCall({ link, params, launchA, launchB, shot }) {
  const a = await launchA();
  await a.page.goto(withParams(link, params));
  await waitState(a, 'ready');
  const shared = await a.page.inputValue('#share-link');
  assert.match(await a.page.url(), /#leaf_[A-Za-z0-9_-]{43}$/, 'the page replaced #generate_leaf with a leaf');
  assert.equal(shared.split('#')[1], (await a.page.url()).split('#')[1], 'the shown link carries the same leaf');
  await shot?.(a, '1-link');
  await a.page.click('#join');
  await waitState(a, 'waiting');
  const b = await launchB();
  await b.page.goto(shared);
  await waitState(b, 'ready');
  const clicked = Date.now();
  await b.page.click('#join');
  await waitState(b, 'in-call');
  await waitState(a, 'in-call');
  return { a, b, shared, joinSeconds: (Date.now() - clicked) / 1000 };
}

/** Frames sent by one side and received by the other over `ms`, latency samples and CPU. */
export async function measureFlow(a, b, ms) {
  const [a0, b0] = [await stats(a), await stats(b)];
  const cpu = [cpuMeter(a.pid), cpuMeter(b.pid)];
  const [latA, latB] = await Promise.all([sampleLatency(a, ms), sampleLatency(b, ms)]);
  const [cpuA, cpuB] = cpu.map((m) => m.stop());
  const [a1, b1] = [await stats(a), await stats(b)];
  const flow = (s0, s1, r0, r1) => ({
    sent: s1.framesSent - s0.framesSent,
    received: r1.framesReceived - r0.framesReceived,
    dropped: s1.framesDropped - s0.framesDropped,
  });
  return { ab: flow(a0, a1, b0, b1), ba: flow(b0, b1, a0, a1), a1, b1, latA, latB, cpuA, cpuB };
}

/** The figures of a measured window, for results.json (the same keys for every engine). */
export function flowFigures(m) {
  const lat = [...m.latA, ...m.latB];
  return {
    flowAtoB: m.ab, flowBtoA: m.ba,
    underruns: { a: m.a1.underruns, b: m.b1.underruns },
    playbackXruns: { a: m.a1.playbackXruns, b: m.b1.playbackXruns },
    mouthToEarMs: {
      p50: percentile(lat, 50), p95: percentile(lat, 95), samples: lat.length,
      // The window's second half: the call settled (a real call lasts minutes, not seconds).
      laterP50: percentile([...m.latA.slice(m.latA.length >> 1), ...m.latB.slice(m.latB.length >> 1)], 50),
      a: percentile(m.latA, 50), b: percentile(m.latB, 50),
    },
    wireRate: m.a1.wireRate, contextRate: { a: m.a1.contextRate, b: m.b1.contextRate },
    frameMs: m.a1.frameMs, rttMs: m.a1.rttMs,
    jitterMs: { depth: m.b1.jitterDepthMs, target: m.b1.jitterTargetMs, arrival: m.b1.arrivalJitterMs },
    driftPpm: { a: m.a1.driftPpm, b: m.b1.driftPpm },
    // Where the engine's own time goes: playback-ring fill (lowest at a wake, and kept), longest
    // gap between engine wakes, what the socket still held at a wake, and the device latency the
    // AudioContext reports.
    playback: Object.fromEntries([['a', m.a1], ['b', m.b1]].map(([k, s]) => [k, {
      lowestFillMs: s.playbackFillMs, targetMs: s.playbackTargetMs, wakeGapMs: s.wakeGapMs,
    }])),
    uplinkBacklogMs: { a: m.a1.uplinkBacklogMs, b: m.b1.uplinkBacklogMs },
    framesDropped: { a: m.a1.framesDropped, b: m.b1.framesDropped },
    outputLatencyMs: { a: m.a1.outputLatencyMs, b: m.b1.outputLatencyMs },
    // Each browser's whole process tree, % of one core.
    cpuPercentOfCore: { a: m.cpuA.total, b: m.cpuB.total },
    cpuByThread: { a: m.cpuA.threads, b: m.cpuB.threads },
  };
}

/**
 * The pitch each side hears, from 2 s of its remote node recorded sample-exactly: the other
 * side's (first) tone fitted by least squares, as an error in ppm (one clock: 0 is right), with
 * what the engine counted meanwhile (an edit or a loss in the block blurs the fit, and is
 * accounted for) and the speed it played the other side at.
 */
export async function heardPitch(label, a, b, out) {
  await Promise.all([a, b].map((p) => startRecording(p.page, [0.2], 2)));
  const [ra, rb] = await Promise.all([a, b].map((p) => collect(p.page, 1, 10_000)));
  const [sa, sb] = [await stats(a), await stats(b)];
  const fit = (rec, tone, who, s) => {
    const [block] = rec.blocks;
    const f = analyze(block.samples, rec.rate, [tone], path.join(out, `${label}-${who}-hears.f32`));
    return {
      tone, errorPpm: f.tones[0].errorPpm, snrDb: f.snrDb, glitches: f.glitches.length,
      counted: block.counted, resampleRatioPpm: s.resampleRatioPpm, edits: s.edits,
    };
  };
  return { a: fit(ra, b.mic.freqs[0], 'a', sa), b: fit(rb, a.mic.freqs[0], 'b', sb) };
}

/** `who` hears the other's tone at half its amplitude or more, and not its own. */
export function checkHearing(who, heard, other, own) {
  const [f] = other.freqs;
  assert.ok(heard[f] >= other.amplitude / 2,
    `${who} hears the other's ${f} Hz at ${heard[f].toFixed(3)}, less than half of ${other.amplitude}`);
  for (const g of own.freqs) assert.ok(heard[g] < 0.02, `${who} hears its own ${g} Hz at ${heard[g].toFixed(3)}`);
}

/** Both sides' tones, for `hear()`. */
export const tonesOf = (a, b) => [...a.mic.freqs, ...b.mic.freqs];

/** Re-export for the test files. */
export { hear, stats, waitState };
