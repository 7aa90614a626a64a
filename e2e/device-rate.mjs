// The AudioContext at the wire rate against the device's own, side by side in one run:
// `node e2e/device-rate.mjs [rounds] [seconds]` (after `just build`). Each round makes two
// 200 kHz calls between two headless Chromiums, one per path, in alternating order:
// - "wire rate": the page's context forced to 200 kHz with latencyHint "interactive" (an init
//   script wraps the AudioContext constructor), the path before contexts ran at the device's rate;
// - "device rate": the page as it is: the device's rate (PulseAudio's 48 kHz) with latencyHint 0,
//   the jitter buffer converting 200 kHz down, the capture side up.
// Both play into a PulseAudio null sink (one clock). Printed and written to
// target/e2e/device-rate.json: CPU of each browser, the engine's mouth-to-ear estimate and the
// device latency the context reports, per path.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { launchPerson } from './lib/browser.mjs';
import { flowFigures, measureFlow, startCall } from './lib/calls.mjs';
import { startPulse } from './lib/pulse.mjs';
import { repoRoot, startServer } from './lib/server.mjs';
import { writeTone } from './lib/wav.mjs';

const rounds = Number(process.argv[2] || 2);
const seconds = Number(process.argv[3] || 10);
const OUT = path.join(repoRoot, 'target/e2e');
mkdirSync(OUT, { recursive: true });

const WIRE_RATE_CONTEXT = `{
  const Native = window.AudioContext;
  window.AudioContext = class extends Native {
    constructor(options = {}) { super({ ...options, sampleRate: 200000, latencyHint: 'interactive' }); }
  };
}`;

const tone = (f) => {
  const file = path.join(OUT, `tone-${f}.wav`);
  writeTone(file, { freq: f, amplitude: 0.5 });
  return { file, freqs: [f], amplitude: 0.5 };
};
const [toneA, toneB] = [tone(440), tone(1000)];

const pulse = await startPulse();
const server = await startServer({ port: 0 });
const runs = [];
try {
  for (let round = 0; round < rounds; round++) {
    const paths = round % 2 === 0 ? ['wire rate', 'device rate'] : ['device rate', 'wire rate'];
    for (const which of paths) {
      const launch = (name, t) => async () => {
        const p = await launchPerson(name, { wav: t.file, pulse: pulse.server });
        if (which === 'wire rate') await p.page.context().addInitScript(WIRE_RATE_CONTEXT);
        return { ...p, mic: t };
      };
      const { a, b } = await startCall({
        link: server.link, params: 'studio=1', launchA: launch(`${which}-A`, toneA), launchB: launch(`${which}-B`, toneB),
      });
      try {
        await new Promise((r) => setTimeout(r, 3000)); // past the start
        const f = flowFigures(await measureFlow(a, b, seconds * 1000));
        const run = {
          path: which, round, contextRate: f.contextRate, cpuPercentOfCore: f.cpuPercentOfCore,
          mouthToEarMs: f.mouthToEarMs, outputLatencyMs: f.outputLatencyMs, jitterMs: f.jitterMs,
          playback: f.playback, underruns: f.underruns, flowAtoB: f.flowAtoB, flowBtoA: f.flowBtoA,
          audioThreads: Object.fromEntries(['a', 'b'].map((k) => [k, Object.fromEntries(
            Object.entries(f.cpuByThread[k]).filter(([name]) => /audio|Audio|Worklet|Worker|Dedicated/.test(name)))])),
        };
        runs.push(run);
        console.log(JSON.stringify(run));
      } finally {
        await a.close();
        await b.close();
      }
    }
  }
} finally {
  await server.stop();
  await pulse.stop();
}
const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
const summary = Object.fromEntries(['wire rate', 'device rate'].map((which) => {
  const r = runs.filter((x) => x.path === which);
  return [which, {
    contextRate: r[0]?.contextRate.a,
    cpuPercentOfCore: +mean(r.flatMap((x) => [x.cpuPercentOfCore.a, x.cpuPercentOfCore.b])).toFixed(1),
    mouthToEarP50Ms: +mean(r.map((x) => x.mouthToEarMs.p50)).toFixed(1),
    outputLatencyMs: +mean(r.flatMap((x) => [x.outputLatencyMs.a, x.outputLatencyMs.b])).toFixed(1),
    jitterDepthMs: +mean(r.map((x) => x.jitterMs.depth)).toFixed(1),
    underruns: r.map((x) => x.underruns),
  }];
}));
console.table(summary);
writeFileSync(path.join(OUT, 'device-rate.json'), JSON.stringify({ summary, runs }, null, 2));
