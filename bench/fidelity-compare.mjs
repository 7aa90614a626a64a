// Before and after, side by side in one run: the same two-browser calls against two builds of
// line (each a checkout with target/release/line-server and www/pkg built), measuring what B
// hears from A (pitch error, SNR, glitches, by `line-loadgen analyze`), mouth-to-ear, underruns,
// playback-ring xruns and the drift each engine reports. Used for BENCHMARKS.md:
//
//   node bench/fidelity-compare.mjs <before-checkout> <after-checkout> [seconds]
//
// Tones are drawn at random (seed printed); both builds hear the same ones.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const { launchPerson } = await import(path.join(repo, 'e2e/lib/browser.mjs'));
const { percentile, stats, waitState, withParams } = await import(path.join(repo, 'e2e/lib/page.mjs'));
const { seededRandom } = await import(path.join(repo, 'e2e/lib/seed.mjs'));
const { writeTone } = await import(path.join(repo, 'e2e/lib/wav.mjs'));

const [beforeDir, afterDir] = process.argv.slice(2, 4).map((d) => path.resolve(d));
const SECONDS = Number(process.argv[4] ?? 40);
const BLOCKS = [15, 25, 35].filter((b) => b + 2 <= SECONDS);
const OUT = path.join(repo, 'target/bench/fidelity-compare');
mkdirSync(OUT, { recursive: true });
const random = seededRandom('fidelity compare');
const tones = { a: Math.round(1000 + 9000 * random()), b: Math.round(1000 + 9000 * random()) };

async function startServer(dir) {
  const www = path.join(OUT, `www-${path.basename(dir)}`);
  cpSync(path.join(dir, 'www'), www, { recursive: true });
  copyFileSync(path.join(repo, 'e2e/lib/tap.js'), path.join(www, 'e2e-tap.js'));
  const child = spawn(path.join(dir, 'target/release/line-server'), ['--bind', '127.0.0.1', '--port', '0', '--www', www],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const link = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no link:\n${log}`)), 10_000);
    child.stdout.on('data', () => {
      const m = /Try (\S+#generate_leaf)/.exec(log);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
  return { link, stop: () => new Promise((r) => { child.on('exit', r); child.kill('SIGTERM'); }) };
}

async function call(dir, params) {
  const server = await startServer(dir);
  const wav = (f) => { const p = path.join(OUT, `tone-${f}.wav`); writeTone(p, { freq: f, amplitude: 0.5, seconds: 60 }); return p; };
  const a = await launchPerson('A', { wav: wav(tones.a) });
  const b = await launchPerson('B', { wav: wav(tones.b) });
  try {
    await a.page.goto(withParams(server.link, params));
    await waitState(a, 'ready');
    const link = await a.page.inputValue('#share-link');
    await a.page.click('#join');
    await waitState(a, 'waiting');
    await b.page.goto(link);
    await waitState(b, 'ready');
    await b.page.click('#join');
    await waitState(b, 'in-call');
    await waitState(a, 'in-call');
    // The tap, as in e2e/lib/record.mjs, and the engine's figures every 100 ms.
    await b.page.evaluate(async (blocks) => {
      const ctx = window.line.audioContext;
      await ctx.audioWorklet.addModule('/e2e-tap.js');
      const rate = ctx.sampleRate, now = Math.round(ctx.currentTime * rate);
      const node = new AudioWorkletNode(ctx, 'line-tap', { numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { blocks: blocks.map((s) => [now + Math.round(s * rate), 2 * rate]) } });
      window.__blocks = [];
      window.__lat = [];
      node.port.onmessage = (e) => { if (e.data.data) window.__blocks.push(e.data.data); };
      window.line.remoteNode.connect(node);
      node.connect(ctx.destination);
      setInterval(() => { const s = window.line.stats(); if (s && s.mouthToEarMs > 0) window.__lat.push(s.mouthToEarMs); }, 100);
    }, BLOCKS);
    const settled = await stats(b);
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const end = await stats(b);
    const { blocks, lat, rate } = await b.page.evaluate(() => ({
      rate: window.line.audioContext.sampleRate,
      lat: window.__lat,
      blocks: window.__blocks.map((f) => {
        const bytes = new Uint8Array(f.buffer);
        let s = '';
        for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(s);
      }),
    }));
    const heard = blocks.map((b64, i) => {
      const file = path.join(OUT, `${path.basename(dir)}-${params.replace(/\W/g, '_')}-${BLOCKS[i]}s.f32`);
      writeFileSync(file, Buffer.from(b64, 'base64'));
      const run = spawnSync(path.join(repo, 'target/release/line-loadgen'), ['analyze', file, '--rate', String(rate), '--tones', String(tones.a)], { encoding: 'utf8' });
      const f = JSON.parse(run.stdout);
      return { atS: BLOCKS[i], errorPpm: f.tones[0].errorPpm, snrDb: f.snrDb, glitches: f.glitches.length };
    });
    return {
      heard,
      mouthToEarMs: { p50: percentile(lat, 50), p95: percentile(lat, 95) },
      underruns: end.underruns - settled.underruns,
      playbackXruns: end.playbackXruns - settled.playbackXruns,
      framesConcealed: end.framesConcealed - settled.framesConcealed,
      driftPpm: end.driftPpm,
      resampleRatioPpm: end.resampleRatioPpm ?? null,
      edits: end.edits === undefined ? null : end.edits - settled.edits,
    };
  } finally {
    await a.close();
    await b.close();
    await server.stop();
  }
}

const results = { seed: random.seed, tones, seconds: SECONDS };
for (const [label, params] of [['200k', 'studio=1'], ['48k', 'studio=1&mobile=1']]) {
  for (const [which, dir] of [['before', beforeDir], ['after', afterDir]]) {
    results[`${label}-${which}`] = await call(dir, params);
    console.log(label, which, JSON.stringify(results[`${label}-${which}`]));
  }
}
writeFileSync(path.join(OUT, 'results.json'), JSON.stringify(results, null, 2));
console.log(`written to ${path.join(OUT, 'results.json')}`);
