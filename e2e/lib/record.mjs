// Sample-exact recording of what a page plays: an AudioWorklet tap (`tap.js`, served beside the
// page by `server.mjs`) on `window.line.remoteNode` that keeps blocks of the samples it sees, and
// the engine's counters around each block (what the buffer did to the audio: edits,
// concealment, losses) and its clock-drift correction, for the fidelity analysis.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './server.mjs';

const loadgen = path.join(repoRoot, 'target/release/line-loadgen');

/** How far before a block starts and after it ends the counters are read, ms. */
const AFTER_MS = 200;

/** Counters of the engine that account for a change in the audio. */
export const COUNTED = ['framesLost', 'framesConcealed', 'samplesConcealed', 'samplesDropped', 'samplesInserted', 'underruns', 'playbackXruns'];

/**
 * Starts recording `blocks` (seconds from now) of `seconds` each from the page's remote node.
 * Resolves when the tap runs; `collect(page)` later returns the blocks with the counters' changes
 * around each (from 0.2 s before to 0.2 s after, the playback ring's lead included).
 */
export async function startRecording(page, blocks, seconds) {
  await page.evaluate(async ({ blocks, seconds }) => {
    const ctx = window.line.audioContext;
    if (!window.__tapLoaded) {
      await ctx.audioWorklet.addModule('/e2e-tap.js');
      window.__tapLoaded = true;
    }
    const rate = ctx.sampleRate;
    const now = Math.round(ctx.currentTime * rate);
    const node = new AudioWorkletNode(ctx, 'line-tap', {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { blocks: blocks.map((b) => [now + Math.round(b * rate), Math.round(seconds * rate)]) },
    });
    const rec = { rate, blocks: [], stats: [], node };
    window.__recording = rec;
    // The counters, 20 times a second, with the time they were read.
    rec.timer = setInterval(() => rec.stats.push({ t: performance.now(), s: window.line.stats() }), 50);
    node.port.onmessage = (e) => {
      if (e.data.started !== undefined) {
        rec.blocks.push({ start: e.data.started, startedAt: performance.now() });
      } else {
        const b = rec.blocks.find((x) => x.start === e.data.start);
        b.endedAt = performance.now();
        b.data = e.data.data;
      }
    };
    window.line.remoteNode.connect(node);
    // The tap outputs silence; connecting it keeps the graph pulling it.
    node.connect(ctx.destination);
  }, { blocks, seconds });
}

/**
 * Waits for `count` blocks, then returns `{ rate, blocks: [{ samples: Float32Array, counted,
 * correctionPpm }] }`: `counted` the counters' changes around each block, `correctionPpm` the
 * engine's clock-drift correction (`resampleRatioPpm`) before and after it.
 */
export async function collect(page, count, timeout) {
  await page.waitForFunction((n) => window.__recording.blocks.filter((b) => b.data).length === n, count, { timeout });
  // The counters reach the page up to a report interval late: read them well after the end.
  await page.waitForFunction((after) => {
    const rec = window.__recording;
    return rec.stats.at(-1).t >= Math.max(...rec.blocks.map((b) => b.endedAt)) + after;
  }, AFTER_MS + 100, { timeout: 5_000 });
  const raw = await page.evaluate(({ counted, AFTER_MS }) => {
    const rec = window.__recording;
    clearInterval(rec.timer);
    const toBase64 = (f32) => {
      const bytes = new Uint8Array(f32.buffer);
      let s = '';
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return btoa(s);
    };
    const at = (t, before) => {
      const pick = before ? rec.stats.filter((x) => x.t <= t).at(-1) : rec.stats.find((x) => x.t >= t);
      return (pick ?? (before ? rec.stats[0] : rec.stats.at(-1))).s;
    };
    return {
      rate: rec.rate,
      blocks: rec.blocks.filter((b) => b.data).map((b) => {
        const [s0, s1] = [at(b.startedAt - AFTER_MS, true), at(b.endedAt + AFTER_MS, false)];
        return {
          data: toBase64(b.data),
          counted: Object.fromEntries(counted.map((k) => [k, (s1[k] ?? 0) - (s0[k] ?? 0)])),
          correctionPpm: [s0.resampleRatioPpm ?? 0, s1.resampleRatioPpm ?? 0],
        };
      }),
    };
  }, { counted: COUNTED, AFTER_MS });
  return {
    rate: raw.rate,
    blocks: raw.blocks.map((b) => ({
      samples: new Float32Array(Buffer.from(b.data, 'base64').buffer.slice(0)),
      counted: b.counted,
      correctionPpm: b.correctionPpm,
    })),
  };
}

/** The fidelity of `samples` (at `rate`) for `tones`, by `line-loadgen analyze`. */
export function analyze(samples, rate, tones, file) {
  writeFileSync(file, Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength));
  const run = spawnSync(loadgen, ['analyze', file, '--rate', String(rate), '--tones', tones.join(',')], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`line-loadgen analyze failed: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** Whether a block's counters say nothing happened to its audio. */
export const clean = (counted) => Object.values(counted).every((v) => v === 0);
