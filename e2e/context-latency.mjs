// What an AudioContext gives at each rate and latencyHint, for choosing the hint (client.rs,
// `SMALLEST_BUFFER_UP_TO`): `node e2e/context-latency.mjs [seconds]`. For each output device
// (Chromium's fake one, and a PulseAudio null sink at 48 kHz), each context rate (the device's,
// 96, 192 and 200 kHz) and each hint (0 and "interactive"), a context plays a worklet that counts
// the frames it renders; printed: baseLatency + outputLatency, how much of real time was
// rendered (below 100 %: the audio thread starved, or the device's clock runs slow), and the
// CPU of the audio threads meanwhile. One context at a time, nothing else in the browser.
import http from 'node:http';
import { launchPerson } from './lib/browser.mjs';
import { cpuMeter } from './lib/cpu.mjs';
import { startPulse } from './lib/pulse.mjs';

const seconds = Number(process.argv[2] || 5);
const COUNTER = `registerProcessor('count', class extends AudioWorkletProcessor {
  constructor() { super(); this.frames = 0; this.port.onmessage = () => this.port.postMessage(this.frames); }
  process(inputs, outputs) { this.frames += outputs[0][0].length; return true; }
});`;

// A secure context (127.0.0.1) with nothing in it: AudioWorklet needs one.
const blank = http.createServer((_req, res) => res.end('<!doctype html><title>blank</title>'));
await new Promise((r) => blank.listen(0, '127.0.0.1', r));
const pulse = await startPulse();
const rows = [];
try {
  for (const [device, server] of [['fake', undefined], ['pulse 48k', pulse.server]]) {
    const p = await launchPerson(`ctx-${device}`, { pulse: server });
    try {
      await p.page.goto(`http://127.0.0.1:${blank.address().port}/`);
      for (const rate of [null, 96000, 192000, 200000]) {
        for (const hint of [0, 'interactive']) {
          const handle = await p.page.evaluate(async ({ rate, hint, COUNTER }) => {
            const ctx = new AudioContext(rate ? { sampleRate: rate, latencyHint: hint } : { latencyHint: hint });
            const url = URL.createObjectURL(new Blob([COUNTER], { type: 'text/javascript' }));
            await ctx.audioWorklet.addModule(url);
            const node = new AudioWorkletNode(ctx, 'count', { numberOfInputs: 0, outputChannelCount: [1] });
            node.connect(ctx.destination);
            await ctx.resume();
            await new Promise((r) => setTimeout(r, 1000));
            window.__ctx = { ctx, node };
            const frames = () => new Promise((r) => { node.port.onmessage = (e) => r(e.data); node.port.postMessage(0); });
            window.__frames = frames;
            return { rate: ctx.sampleRate, start: await frames(), t0: performance.now() };
          }, { rate, hint, COUNTER });
          const cpu = cpuMeter(p.pid);
          await new Promise((r) => setTimeout(r, seconds * 1000));
          // Threads of the audio path only: a context closed before this one ended its threads,
          // which the whole tree's difference would count as negative time.
          const used = Object.entries(cpu.stop().threads)
            .filter(([name]) => /audio|Audio|Worklet/.test(name)).reduce((s, [, v]) => s + v, 0);
          const end = await p.page.evaluate(async () => {
            const { ctx } = window.__ctx;
            const out = { frames: await window.__frames(), t1: performance.now(), base: ctx.baseLatency, output: ctx.outputLatency };
            await ctx.close();
            return out;
          });
          const realTime = (end.frames - handle.start) / handle.rate / ((end.t1 - handle.t0) / 1000);
          const row = {
            device, asked: rate ?? 'device', rate: handle.rate, hint,
            baseMs: +(1000 * end.base).toFixed(1), outputMs: +(1000 * end.output).toFixed(1),
            realTimePercent: +(100 * realTime).toFixed(1), audioCpuPercentOfCore: +used.toFixed(1),
          };
          rows.push(row);
          console.log(JSON.stringify(row));
        }
      }
    } finally {
      await p.close();
    }
  }
} finally {
  await pulse.stop();
  blank.close();
}
console.table(rows);
