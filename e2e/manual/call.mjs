// A call by hand (issue 5): line-server + two headless Chromium with fake microphones, A plays
// 440 Hz and B 1000 Hz; each side's remote node is tapped with an AnalyserNode and Goertzel.
// Not the automated suite (issue 6): a driver a developer runs and reads.
//
//   npm install playwright-core            # in a scratch folder outside the repository
//   sox -n -r 48000 -c 1 -b 16 /tmp/e2e-scratch/tone440.wav synth 30 sine 440 vol 0.5
//   sox -n -r 48000 -c 1 -b 16 /tmp/e2e-scratch/tone1000.wav synth 30 sine 1000 vol 0.5
//   node call.mjs target/debug/line-server www target/e2e-manual 'studio=1'           # 200 kHz
//   node call.mjs target/debug/line-server www target/e2e-manual 'studio=1&mobile=1'  # 48 kHz
//   KILL=1 node call.mjs …     # kill and restart the server mid-call: both must reconnect
//   NOISO=1 node call.mjs …    # strip COOP/COEP from line.html: the MessagePort fallback
//   CTX_A=44100 node call.mjs … # A's AudioContext at 44.1 kHz, its wire at the link's rate
//   MOBILE_B=1 node call.mjs …  # B joins with the mobile link: 200 kHz one way, 48 kHz the other
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';

const [server, www, out, query = 'studio=1'] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const PORT = 17000 + Math.floor(Math.random() * 1000);
const KEY = 'a'.repeat(36) + 'B'.repeat(36);
const base = `http://127.0.0.1:${PORT}`;
let srvLog = '';
function startServer() {
  const s = spawn(server, ['--port', String(PORT), '--bind', '127.0.0.1', '--www', www], {
    env: { ...process.env, APIKEY: KEY, SITEURL: base }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  s.stdout.on('data', (d) => { srvLog += d; });
  s.stderr.on('data', (d) => { srvLog += d; });
  return s;
}
let srv = startServer();
await new Promise((r) => setTimeout(r, 1000));

const flags = (wav, mic = true) => [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
  ...(mic ? ['--use-fake-ui-for-media-stream'] : []), '--use-fake-device-for-media-stream',
  `--use-file-for-fake-audio-capture=${wav}`,
];
async function browser(name, wav, mic = true) {
  const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
    ignoreDefaultArgs: ['--mute-audio'], args: flags(wav, mic) });
  const page = await b.newPage({ viewport: { width: 720, height: 1000 } });
  if (process.env.NOISO) {
    // Not cross-origin isolated: the page must fall back to MessagePorts.
    await page.route('**/line.html*', async (route) => {
      const resp = await route.fetch();
      const headers = { ...resp.headers() };
      delete headers['cross-origin-opener-policy'];
      delete headers['cross-origin-embedder-policy'];
      await route.fulfill({ response: resp, headers });
    });
  }
  page.on('console', (m) => console.log(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[${name}] pageerror: ${e}`));
  return { b, page, name };
}
const state = (p) => p.evaluate(() => document.body.dataset.state);
async function waitState(p, s, ms = 15000) {
  await p.waitForFunction((s) => document.body.dataset.state === s, s, { timeout: ms });
}
// Goertzel amplitudes of 440 and 1000 Hz on the remote node, over ~0.15 s, several times.
async function measure(p) {
  return p.evaluate(async () => {
    const ctx = window.line.audioContext;
    const an = ctx.createAnalyser();
    an.fftSize = 32768;
    window.line.remoteNode.connect(an);
    const amp = (buf, f) => {
      const w = 2 * Math.PI * f / ctx.sampleRate; let re = 0, im = 0;
      for (let i = 0; i < buf.length; i++) { re += buf[i] * Math.cos(w * i); im += buf[i] * Math.sin(w * i); }
      return 2 * Math.hypot(re, im) / buf.length;
    };
    const res = [];
    for (let k = 0; k < 5; k++) {
      await new Promise((r) => setTimeout(r, 300));
      const buf = new Float32Array(an.fftSize);
      an.getFloatTimeDomainData(buf);
      const peak = (f0) => { let best = [0, 0]; for (let f = f0 * 0.97; f < f0 * 1.03; f += 0.25) { const a = amp(buf, f); if (a > best[1]) best = [f, a]; } return best.map((x) => +x.toFixed(3)); };
      res.push({ a440: amp(buf, 440), a1000: amp(buf, 1000), p440: peak(440), p1000: peak(1000) });
    }
    an.disconnect();
    return { rate: ctx.sampleRate, res };
  });
}

try {
  const A = await browser('A', '/tmp/e2e-scratch/tone440.wav');
  await A.page.goto(`${base}/line.html?apikey=${KEY}&${query}#generate_leaf`);
  await waitState(A.page, 'ready');
  // MOBILE_B=1: B opens the mobile link (48 kHz) while A sends at A's rate: a cross-rate call.
  const link = process.env.MOBILE_B
    ? await A.page.getAttribute('#share-mobile', 'href')
    : await A.page.inputValue('#share-link');
  console.log('A url', A.page.url().replace(KEY, 'KEY'), 'share', link.replace(KEY, 'KEY'));
  await A.page.screenshot({ path: `${out}/1-link.png`, fullPage: true });
  if (process.env.CTX_A) {
    // CTX_A=44100: A's AudioContext runs at another rate than its wire rate (the Firefox path:
    // the engine resamples capture, the jitter buffer converts playback). Joined through the API.
    await A.page.evaluate(async (contextRate) => {
      const { LineClient } = await import('./pkg/line_client.js');
      const l = window.lineLink, c = new LineClient();
      window.line = c;
      c.addEventListener('state', (e) => { document.body.dataset.state = e.detail.state; });
      await c.join({ apiKey: l.apiKey, leaf: l.leaf, rate: l.rate, frameMs: l.frameMs, studio: l.studio, contextRate });
    }, Number(process.env.CTX_A));
  } else {
    await A.page.click('#join');
  }
  await waitState(A.page, 'waiting');
  await A.page.screenshot({ path: `${out}/2-waiting.png`, fullPage: true });

  const B = await browser('B', '/tmp/e2e-scratch/tone1000.wav');
  await B.page.goto(link);
  await waitState(B.page, 'ready');
  await B.page.click('#join');
  await waitState(B.page, 'in-call');
  await waitState(A.page, 'in-call');
  await new Promise((r) => setTimeout(r, 5000));
  console.log('isolated', await A.page.evaluate(() => crossOriginIsolated), await B.page.evaluate(() => crossOriginIsolated));
  const mA = await measure(A.page), mB = await measure(B.page);
  const sA = await A.page.evaluate(() => window.line.stats());
  const sB = await B.page.evaluate(() => window.line.stats());
  console.log('A hears', JSON.stringify(mA));
  console.log('B hears', JSON.stringify(mB));
  console.log('A stats', JSON.stringify(sA));
  console.log('B stats', JSON.stringify(sB));
  if (process.env.CTX_A) {
    await A.b.close(); await B.b.close(); srv.kill('SIGTERM');
    process.exit(0);
  }
  // Mute: B's output goes silent within a second or so, and comes back after unmuting.
  await A.page.click('#mute');
  await B.page.waitForFunction(() => window.line.stats().outputLevel < 0.01, null, { timeout: 5000 });
  console.log('A muted: B output level', await B.page.evaluate(() => window.line.stats().outputLevel));
  await A.page.screenshot({ path: `${out}/3-muted-A.png`, fullPage: true });
  await A.page.click('#mute');
  await B.page.waitForFunction(() => window.line.stats().outputLevel > 0.4, null, { timeout: 5000 });
  console.log('A unmuted: B output level', await B.page.evaluate(() => window.line.stats().outputLevel));
  await A.page.screenshot({ path: `${out}/3-in-call-A.png`, fullPage: true });
  await B.page.screenshot({ path: `${out}/3-in-call-B.png`, fullPage: true });

  if (process.env.KILL) {
    // Server restart mid-call: both sides must reconnect without reload.
    srv.kill('SIGTERM');
    await waitState(A.page, 'reconnecting');
    await A.page.screenshot({ path: `${out}/4-reconnecting.png`, fullPage: true });
    console.log('server killed; A is reconnecting');
    await new Promise((r) => setTimeout(r, 2000));
    await A.page.screenshot({ path: `${out}/4-reconnecting-2s.png`, fullPage: true });
    const t0 = Date.now();
    srv = startServer();
    await waitState(A.page, 'in-call', 20000);
    await waitState(B.page, 'in-call', 20000);
    console.log('both back in call', (Date.now() - t0) / 1000, 's after restart');
    await new Promise((r) => setTimeout(r, 3000));
    console.log('A hears after reconnect', JSON.stringify(await measure(A.page)));
    console.log('B hears after reconnect', JSON.stringify(await measure(B.page)));
    console.log('A stats', JSON.stringify(await A.page.evaluate(() => window.line.stats())));
  }

  // A third person on a full line.
  if (!process.env.KILL) {
    const C = await browser('C', '/tmp/e2e-scratch/tone440.wav');
    await C.page.goto(link);
    await waitState(C.page, 'ready');
    await C.page.click('#join');
    // 409 before upgrade is fatal; a server that refuses only at upgrade gives a notice after 3 tries.
    await C.page.waitForFunction(() => [document.body.dataset.error, document.body.dataset.notice].includes('line-full'),
      null, { timeout: 20000 });
    console.log('C', await C.page.evaluate(() => JSON.stringify(document.body.dataset)));
    await C.page.screenshot({ path: `${out}/5-line-full.png`, fullPage: true });
    await C.b.close();

    await B.page.click('#hangup');
    await waitState(B.page, 'ended');
    await waitState(A.page, 'waiting');
    console.log('B hung up; A waits');
    await B.page.screenshot({ path: `${out}/6-ended.png`, fullPage: true });
  }
  await A.b.close();
  await B.b.close();
} catch (e) {
  console.log('FAILED', e);
  console.log(srvLog.replaceAll(KEY, 'KEY').slice(-3000));
  process.exitCode = 1;
} finally {
  srv.kill('SIGTERM');
}
