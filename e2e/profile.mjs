// Where one browser's time goes during a call: `just profile-browser [link params] [seconds]`.
// Starts the release server and two headless browsers in a call (as the e2e suite does), then,
// over the same window, samples the engine worker's JavaScript/wasm stack with V8's profiler
// (through the DevTools protocol) and reads the CPU of every thread of A's browser from /proc.
// Prints both, largest first, and writes them to target/e2e/profile-<params>.txt.
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchPerson } from './lib/browser.mjs';
import { cpuMeter } from './lib/cpu.mjs';
import { repoRoot, startServer } from './lib/server.mjs';
import { waitState, withParams } from './lib/page.mjs';
import { writeTone } from './lib/wav.mjs';

const params = process.argv[2] || 'studio=1';
const seconds = Number(process.argv[3] || 10);
const out = path.join(repoRoot, 'target/e2e');
mkdirSync(out, { recursive: true });
const wav = (f) => {
  const file = path.join(out, `tone-${f}.wav`);
  writeTone(file, { freq: f, amplitude: 0.5 });
  return file;
};

const server = await startServer({ port: 0 });
const a = await launchPerson('A', { wav: wav(440) });
const b = await launchPerson('B', { wav: wav(1000) });
try {
  // The worker is a target of its own; Playwright opens sessions only to pages, so talk to it
  // through the page's session with (non-flat) target messages.
  const cdp = await a.page.context().newCDPSession(a.page);
  let worker = null;
  const waiting = new Map();
  let nextId = 1;
  cdp.on('Target.attachedToTarget', (e) => { if (e.targetInfo.type === 'worker') worker = e.sessionId; });
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    const m = JSON.parse(e.message);
    waiting.get(m.id)?.(m);
    waiting.delete(m.id);
  });
  const send = (method, p = {}) => new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    cdp.send('Target.sendMessageToTarget', { sessionId: worker, message: JSON.stringify({ id, method, params: p }) });
  });
  await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });

  await a.page.goto(withParams(server.link, params));
  await waitState(a, 'ready');
  const shared = await a.page.inputValue('#share-link');
  await a.page.click('#join');
  await waitState(a, 'waiting');
  await b.page.goto(shared);
  await waitState(b, 'ready');
  await b.page.click('#join');
  await waitState(a, 'in-call');
  await new Promise((r) => setTimeout(r, 3000)); // past the start
  if (!worker) throw new Error('the engine worker never attached');

  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 200 });
  await send('Profiler.start');
  const cpu = cpuMeter(a.pid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const threads = cpu.stop();
  const { profile } = (await send('Profiler.stop')).result;

  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (const id of profile.samples) {
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    const name = functionName || `(${url.split('/').pop()}:${lineNumber})`;
    self.set(name, (self.get(name) ?? 0) + 1);
  }
  const share = (n) => (100 * n) / profile.samples.length; // of the worker thread's wall time
  const lines = [
    `# ${params}, ${seconds} s, load average ${(await import('node:os')).loadavg()[0].toFixed(1)}`,
    `# A's browser, whole process tree: ${threads.total.toFixed(1)} % of one core; by thread:`,
    ...Object.entries(threads.threads).map(([k, v]) => `${v.toFixed(1).padStart(6)} %  ${k}`),
    '# the engine worker, V8 samples (self time, % of the wall clock):',
    ...[...self].sort((x, y) => y[1] - x[1]).slice(0, 30)
      .map(([k, n]) => `${share(n).toFixed(2).padStart(6)} %  ${k.replace(/::h[0-9a-f]{16}$/, '')}`),
  ];
  console.log(lines.join('\n'));
  writeFileSync(path.join(out, `profile-${params.replace(/[^\w.=-]+/g, '_')}.txt`), `${lines.join('\n')}\n`);
} finally {
  await a.close();
  await b.close();
  await server.stop();
}
