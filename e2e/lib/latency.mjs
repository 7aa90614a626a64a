// Mouth to ear, measured rather than estimated: each side's fake microphone plays a click train
// whose gaps never repeat, a worklet (`line-onsets` in tap.js) notes the context frame of every
// click at the sender's microphone node and at the receiver's remote node, and each page's
// `getOutputTimestamp` maps its context frames to its `performance` clock; both pages run on one
// machine, so `performance.timeOrigin + now` is one wall clock for both. The receiver's device
// latency (`baseLatency + outputLatency`) is added, as the engine's estimate adds it.
import { percentile } from './page.mjs';

/** A click's onset: this much of full scale... */
const THRESHOLD = 0.3;
/** ...after at least this much quiet, seconds (a click and its resampling ripple are one). */
const QUIET_S = 0.02;
/** Two gaps are the same gap when they differ by less than this, seconds: half the step between
 *  the train's gaps, wider than a latency edit of the jitter buffer (2 ms) that falls between two
 *  clicks, so such a click is still matched. */
const SAME_GAP_S = 0.0029;

/**
 * The gaps of a click train, milliseconds: `count` different ones `step` apart from `shortest`,
 * in an order drawn by `random`. Every gap differs from every other by a step, so the two gaps
 * around a click say which click it is, whatever the delay.
 */
export function clickGaps(random, { count = 80, shortest = 80, step = 6 } = {}) {
  const gaps = Array.from({ length: count }, (_, i) => shortest + step * i);
  for (let i = gaps.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [gaps[i], gaps[j]] = [gaps[j], gaps[i]];
  }
  return gaps;
}

/** Starts noting clicks at the page's microphone node and remote node, the page's clock and the
 *  engine's estimate (every 100 ms). */
export async function startClicks(page) {
  await page.evaluate(async ({ threshold, quietS }) => {
    const ctx = window.line.audioContext;
    if (!window.__tapLoaded) {
      await ctx.audioWorklet.addModule('/e2e-tap.js');
      window.__tapLoaded = true;
    }
    const rec = { mic: [], remote: [], clock: [], estimates: [], nodes: [] };
    const tap = (node, into) => {
      const onsets = new AudioWorkletNode(ctx, 'line-onsets', {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { threshold, quiet: Math.round(quietS * ctx.sampleRate) },
      });
      onsets.port.onmessage = (e) => into.push(e.data);
      node.connect(onsets);
      // The tap outputs silence; connecting it keeps the graph pulling it.
      onsets.connect(ctx.destination);
      rec.nodes.push([node, onsets]);
    };
    tap(window.line.localNode, rec.mic);
    tap(window.line.remoteNode, rec.remote);
    rec.timer = setInterval(() => {
      const t = ctx.getOutputTimestamp();
      rec.clock.push([t.contextTime, t.performanceTime]);
      const s = window.line.stats();
      if (s && s.mouthToEarMs > 0) rec.estimates.push(s.mouthToEarMs);
    }, 100);
    window.__clicks = rec;
  }, { threshold: THRESHOLD, quietS: QUIET_S });
}

/** Stops what `startClicks` started; returns the clicks (context seconds), the clock readings,
 *  the estimates and the device latency. */
export async function stopClicks(page) {
  return page.evaluate(() => {
    const rec = window.__clicks;
    const ctx = window.line.audioContext;
    clearInterval(rec.timer);
    for (const [node, onsets] of rec.nodes) {
      node.disconnect(onsets);
      onsets.disconnect();
      onsets.port.postMessage('stop');
    }
    // Firefox's outputLatency getter can deadlock with PulseAudio (client.rs says why): not read.
    const gecko = navigator.userAgent.includes('Gecko/');
    const deviceS = (ctx.baseLatency ?? 0) + (gecko ? 0 : ctx.outputLatency ?? 0);
    const rate = ctx.sampleRate;
    return {
      rate, timeOrigin: performance.timeOrigin, deviceMs: 1000 * deviceS,
      mic: rec.mic.map((f) => f / rate), remote: rec.remote.map((f) => f / rate),
      clock: rec.clock, estimates: rec.estimates,
    };
  });
}

/**
 * The page's context time (seconds) to wall-clock time (ms): a straight line fitted to its
 * `getOutputTimestamp` readings (the context's clock may run a few thousand ppm off the system's),
 * readings far off the line (a late timer) left out.
 */
export function fitClock(clock, timeOrigin) {
  let points = clock.filter(([c, p]) => c > 0 && p > 0);
  if (points.length < 10) throw new Error(`only ${points.length} readings of the audio clock`);
  let line;
  for (let round = 0; round < 3; round++) {
    line = leastSquares(points);
    const residuals = points.map(([c, p]) => Math.abs(p - line.at(c)));
    const limit = 3 * percentile(residuals, 50) + 0.2;
    points = points.filter((_, i) => residuals[i] <= limit);
  }
  return (seconds) => timeOrigin + line.at(seconds);
}

function leastSquares(points) {
  const n = points.length;
  const mc = points.reduce((s, [c]) => s + c, 0) / n;
  const mp = points.reduce((s, [, p]) => s + p, 0) / n;
  let sxy = 0, sxx = 0;
  for (const [c, p] of points) {
    sxy += (c - mc) * (p - mp);
    sxx += (c - mc) ** 2;
  }
  const slope = sxy / sxx;
  return { slope, at: (c) => mp + slope * (c - mc) };
}

/**
 * Pairs each received click with the sent one it is: the same gap before it and after it
 * (`SAME_GAP_S`), the received later than the sent. Returns `[sentIndex, receivedIndex]` pairs;
 * a click with a neighbour lost, added (concealment repeats audio) or moved by an edit of more
 * than the tolerance is left out.
 */
export function matchClicks(sent, received) {
  const pairs = [];
  for (let k = 1; k + 1 < received.length; k++) {
    const before = received[k] - received[k - 1];
    const after = received[k + 1] - received[k];
    let best = null;
    for (let j = 1; j + 1 < sent.length; j++) {
      const error = Math.max(Math.abs(before - (sent[j] - sent[j - 1])), Math.abs(after - (sent[j + 1] - sent[j])));
      if (error < SAME_GAP_S && (!best || error < best.error)) best = { j, error };
    }
    if (best) pairs.push([best.j, k]);
  }
  return pairs;
}

/** The measured delays (ms) from `sender`'s microphone to `receiver`'s ear, one per matched click,
 *  when each was sent (wall clock, ms), and how many clicks the receiver heard. */
export function mouthToEar(sender, receiver) {
  const [from, to] = [fitClock(sender.clock, sender.timeOrigin), fitClock(receiver.clock, receiver.timeOrigin)];
  const pairs = matchClicks(sender.mic, receiver.remote);
  const sentAt = pairs.map(([j]) => from(sender.mic[j]));
  const delays = pairs.map(([j, k], i) => to(receiver.remote[k]) - sentAt[i] + receiver.deviceMs);
  return { delays, sentAt, heard: receiver.remote.length };
}

/**
 * How much slower than the sender the receiver plays, ppm, from the delays of successive matched
 * clicks: the median slope between neighbours whose delay moved by less than `editMs` (a larger
 * step is a latency edit or a loss, not a rate). A receiver that plays at the sender's rate reads
 * near 0; one that stretches time, say by resampling, reads its stretch. NaN with too few pairs.
 */
export function rateErrorPpm({ delays, sentAt }, editMs = 1) {
  const slopes = [];
  for (let i = 1; i < delays.length; i++) {
    const [dd, dt] = [delays[i] - delays[i - 1], sentAt[i] - sentAt[i - 1]];
    if (Math.abs(dd) < editMs && dt > 0) slopes.push((dd / dt) * 1e6);
  }
  return slopes.length >= 5 ? Math.round(percentile(slopes, 50)) : NaN;
}

/** p50 and p95 of `values`, rounded to 0.1. */
export function spread(values) {
  const r = (x) => Math.round(10 * x) / 10;
  return { p50: r(percentile(values, 50)), p95: r(percentile(values, 95)), n: values.length };
}
