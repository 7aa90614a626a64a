// End to end over WebTransport: real calls through the real line-server whose frames travel as
// QUIC datagrams (docs/PROTOCOL.md section 6.3), beside a peer on a WebSocket, and the page's
// fallback to a WebSocket where UDP to the server is blocked. Run by `just e2e` after the builds.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { launchPerson } from './lib/browser.mjs';
import { launchFirefox } from './lib/firefox.mjs';
import { checkHearing, flowFigures, measureFlow } from './lib/calls.mjs';
import { hear, stats, waitState, withParams } from './lib/page.mjs';
import { startPulse } from './lib/pulse.mjs';
import { recordResults } from './lib/results.mjs';
import { freePort, repoRoot, startServer } from './lib/server.mjs';
import { seededRandom } from './lib/seed.mjs';
import { findToneRun, keyEncodings, tonePcm } from './lib/wire.mjs';
import { twoPeopleTones } from './lib/wav.mjs';
import { failureReporting } from './lib/failures.mjs';

const OUT = path.join(repoRoot, 'target/e2e');
const random = seededRandom('webtransport');
const AMPLITUDE = 0.5;
const MEASURE_MS = 6_000;
/** How long a page may take from its click to "in call" when it falls back (2 s for the
 *  WebTransport attempt, then the WebSocket), seconds. */
const FALLBACK_JOIN_S = 4.5;

mkdirSync(OUT, { recursive: true });
const { toneA: TONE_A, toneB: TONE_B, wavA, wavB } = twoPeopleTones(random, OUT, AMPLITUDE);

let server, pulse, lastShared;
const people = [];
const results = {}; // figures for results.json, under "webtransport"

/**
 * The privacy tap for datagrams, run in the engine's worker before the call starts: QUIC encrypts
 * what goes on the wire, so the tap records what the page hands its WebTransport instead, which
 * is what the relay gets: every datagram written (each a frame), and each session's URL.
 */
function tapWebTransport() {
  const tap = { datagrams: [], urls: [] };
  self.lineTap = tap;
  const write = WritableStreamDefaultWriter.prototype.write;
  WritableStreamDefaultWriter.prototype.write = function (chunk) {
    if (chunk instanceof Uint8Array && tap.datagrams.length < 20_000) tap.datagrams.push(Uint8Array.from(chunk));
    return write.call(this, chunk);
  };
  const Original = self.WebTransport;
  self.WebTransport = function (url, options) {
    tap.urls.push(String(url));
    return new Original(url, options);
  };
}

/** What the tap recorded in `p`'s worker: the datagrams (Buffers) and session URLs. */
async function tapped(p) {
  const [worker] = p.page.workers();
  const { datagrams, urls } = await worker.evaluate(() => ({
    datagrams: self.lineTap.datagrams.map((d) => btoa(String.fromCharCode(...d))),
    urls: self.lineTap.urls,
  }));
  return { datagrams: datagrams.map((d) => Buffer.from(d, 'base64')), urls };
}

/** Chromium as one person; `executablePath`: another way to start it (in a namespace). */
async function chromium(name, wav, { executablePath } = {}) {
  const p = await launchPerson(name, { wav, executablePath });
  p.page.on('worker', (worker) => worker.evaluate(tapWebTransport).catch(() => {}));
  p.mic = { freqs: [wav === wavA ? TONE_A : TONE_B], amplitude: AMPLITUDE };
  people.push(p);
  return p;
}

/** On a failure, what each browser's console and the server's log said. */
const { guarded } = failureReporting(people, () => server);

/** A opens `link` (the server's) with `paramsA`, B the link A shows with `paramsB` added; both
 *  join. Resolves with the seconds from B's click to both in call. */
async function call(a, b, { paramsA = 'studio=1', paramsB = '', link = server.link } = {}) {
  await a.page.goto(withParams(link, paramsA));
  await waitState(a, 'ready');
  const shared = await a.page.inputValue('#share-link');
  await a.page.click('#join');
  await waitState(a, 'waiting');
  lastShared = shared;
  await b.page.goto(paramsB ? withParams(shared, paramsB) : shared);
  await waitState(b, 'ready');
  const clicked = Date.now();
  await b.page.click('#join');
  await waitState(b, 'in-call');
  await waitState(a, 'in-call');
  return (Date.now() - clicked) / 1000;
}

/** Waits until the page's stats name a transport (the first connection opened). */
async function transportOf(p) {
  for (let i = 0; i < 50; i++) {
    const s = await stats(p);
    if (s?.transport) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  return stats(p);
}

/** Each hears the other's tone and not its own. */
async function bothHear(a, b) {
  // Let the jitter buffers settle first.
  await new Promise((r) => setTimeout(r, 1500));
  const freqs = [...a.mic.freqs, ...b.mic.freqs];
  const [heardA, heardB] = [await hear(a, freqs), await hear(b, freqs)];
  checkHearing(a.name, heardA, b.mic, a.mic);
  checkHearing(b.name, heardB, a.mic, b.mic);
  return { heardA, heardB };
}

/** At least 95 % of the frames sent each way arrive (loopback UDP loses none unless a browser
 *  stalls), none fails decryption. */
async function checkFlow(a, b) {
  const m = await measureFlow(a, b, MEASURE_MS);
  for (const [dir, f] of [['A to B', m.ab], ['B to A', m.ba]]) {
    assert.ok(f.sent > 0, `${dir}: frames are sent`);
    assert.ok(f.received / f.sent >= 0.95, `${dir}: ${f.received} of ${f.sent} frames arrived`);
  }
  assert.equal(m.a1.decryptFailures + m.b1.decryptFailures, 0, 'no decryption failures');
  return m;
}

/** `p` sends its audio losslessly coded (`sends`), and receives the other's coded (`receives`):
 *  every audio frame either way, since its first; a coded microphone tone at 200 kHz takes well
 *  under its PCM's bytes. Shown in the statistics panel too. */
async function checkCoding(p, { sends, receives }) {
  const s = await stats(p);
  assert.ok(s.framesSent > 100 && s.framesReceived > 100, `${p.name}: frames flow ${s.framesSent} / ${s.framesReceived}`);
  // A frame coded may not have left yet when the snapshot is taken: within a percent.
  if (sends) assert.ok(s.framesSentLossless / s.framesSent >= 0.99, `${p.name}: ${s.framesSentLossless} of ${s.framesSent} sent coded`);
  else assert.equal(s.framesSentLossless, 0, `${p.name}: sends PCM`);
  if (receives) assert.ok(s.framesReceivedLossless / s.framesReceived >= 0.99, `${p.name}: ${s.framesReceivedLossless} of ${s.framesReceived} received coded`);
  else assert.equal(s.framesReceivedLossless, 0, `${p.name}: receives PCM`);
  if (sends) assert.ok(s.losslessRatio > 0.02 && s.losslessRatio < 0.7, `${p.name}: coded/PCM ${s.losslessRatio}`);
  const shown = await p.page.textContent('[data-stat="coding"]');
  const expected = new RegExp(`^${sends ? 'lossless, \\d+ % of PCM' : 'PCM'} / ${receives ? 'lossless' : 'PCM'}$`);
  assert.match(shown, expected, `${p.name} shows ${shown}`);
  return s.losslessRatio;
}

async function hangUpAll() {
  for (const p of people.splice(0)) await p.close().catch(() => {});
}

before(async () => {
  // WebTransport listens on UDP at the same port number as HTTP.
  server = await startServer({ port: await freePort(), webtransport: true });
});

after(async () => {
  await hangUpAll();
  await server?.stop();
  await pulse?.stop();
  recordResults({ webtransport: results });
});

describe('WebTransport', () => {
  test('Chromium and Chromium call over datagrams at 200 kHz, 2.5 ms frames', () => guarded(async () => {
    const a = await chromium('wt-A', wavA);
    const b = await chromium('wt-B', wavB);
    await call(a, b);
    const [sa, sb] = [await transportOf(a), await transportOf(b)];
    assert.equal(sa.transport, 'webtransport');
    assert.equal(sb.transport, 'webtransport');
    assert.equal(sa.frameMs, 2.5, 'a frame fits a datagram');
    assert.equal(sb.frameMs, 2.5);
    assert.equal(sa.wireRate, 200_000);
    await bothHear(a, b);
    const m = await checkFlow(a, b);
    results['chromium-200k'] = flowFigures(m);
    results['chromium-200k'].losslessRatio = [
      await checkCoding(a, { sends: true, receives: true }),
      await checkCoding(b, { sends: true, receives: true }),
    ];
    // What the relay got in datagrams: frames within a datagram's bound, no leaf, no audio.
    const leaf = Buffer.from(lastShared.split('#leaf_')[1], 'base64url');
    const plain = tonePcm({ freq: TONE_A, rate: 200_000, amplitude: AMPLITUDE, count: 500 });
    assert.ok(findToneRun(plain, { freq: TONE_A, rate: 200_000, amplitude: AMPLITUDE }), 'the search finds a 2.5 ms frame of plain PCM');
    for (const [p, tone] of [[a, TONE_A], [b, TONE_B]]) {
      const { datagrams, urls } = await tapped(p);
      assert.ok(datagrams.length > 1000, `${p.name}'s tap saw the frames (${datagrams.length})`);
      assert.ok(urls.length >= 1 && urls.every((u) => u.includes('/wt?')), `${p.name} opened ${urls}`);
      const longest = Math.max(...datagrams.map((d) => d.length));
      assert.ok(longest <= 1100, `${p.name} sent a ${longest}-byte datagram`);
      for (const part of [...datagrams, ...urls.map((u) => Buffer.from(u))]) {
        for (const enc of keyEncodings(leaf)) assert.equal(part.indexOf(enc), -1, `${p.name}: a leaf went to the relay`);
      }
      for (const d of datagrams) {
        assert.equal(findToneRun(d, { freq: tone, rate: 200_000, amplitude: AMPLITUDE }), null,
          `${p.name}: a run of its ${tone} Hz tone went out in a datagram`);
      }
    }
    console.log(`webtransport call: ${JSON.stringify({ ab: m.ab, ba: m.ba, mouthToEarMs: results['chromium-200k'].mouthToEarMs })}`);
    // The page shows which.
    await a.page.waitForFunction(() => document.querySelector('[data-stat="transport"]').textContent.startsWith('WebTransport'));
    await hangUpAll();
  }));

  test('a mixed call: one on WebTransport, one forced to a WebSocket and raw PCM, audio both ways', () => guarded(async () => {
    const a = await chromium('mixed-A', wavA);
    const b = await chromium('mixed-B', wavB);
    await call(a, b, { paramsB: 'transport=websocket&coding=pcm' });
    const [sa, sb] = [await transportOf(a), await transportOf(b)];
    assert.equal(sa.transport, 'webtransport');
    assert.equal(sb.transport, 'websocket');
    // B's 10 ms frames at 200 kHz (4 KB) reach A on the relay's stream, not in datagrams.
    assert.equal(sb.frameMs, 10);
    await bothHear(a, b);
    results['mixed-200k'] = flowFigures(await checkFlow(a, b));
    // B asked for PCM: it sends PCM, and still reads A's coded frames.
    await checkCoding(a, { sends: true, receives: false });
    await checkCoding(b, { sends: false, receives: true });
    await hangUpAll();
  }));

  test('the server killed mid-call and started again: both reconnect over WebTransport, audio flows within 5 s', () => guarded(async () => {
    const a = await chromium('restart-A', wavA);
    const b = await chromium('restart-B', wavB);
    await call(a, b);
    assert.equal((await transportOf(a)).transport, 'webtransport');
    // Gone without a word: no error record, no close.
    const port = new URL(server.link).port;
    server.kill();
    await waitState(a, 'reconnecting', 10_000);
    await waitState(b, 'reconnecting', 10_000);
    const restarted = Date.now();
    // A new server, with a new certificate of its own: the pages fetch its hash again.
    server = await startServer({ port: Number(port), apikey: server.apikey, webtransport: true });
    await waitState(a, 'in-call', 10_000);
    await waitState(b, 'in-call', 10_000);
    const before = [(await stats(a)).framesReceived, (await stats(b)).framesReceived];
    await a.page.waitForFunction((n) => window.line.stats().framesReceived > n + 40, before[0], { timeout: 10_000 });
    await b.page.waitForFunction((n) => window.line.stats().framesReceived > n + 40, before[1], { timeout: 10_000 });
    const seconds = (Date.now() - restarted) / 1000;
    results.reconnectSeconds = seconds;
    assert.ok(seconds <= 5, `audio flowed again ${seconds} s after the restart`);
    const [sa, sb] = [await stats(a), await stats(b)];
    assert.deepEqual([sa.transport, sb.transport], ['webtransport', 'webtransport']);
    assert.ok(sa.reconnects >= 1 && sb.reconnects >= 1, `reconnects ${sa.reconnects}, ${sb.reconnects}`);
    await bothHear(a, b);
    await hangUpAll();
  }));

  test('with UDP to the server blocked the page falls back to a WebSocket within 2 s', (t) => guarded(async () => {
    if (process.getuid?.() !== 0) {
      t.skip('blocking UDP needs root (a network namespace with a firewall rule)');
      return;
    }
    // A namespace of its own: the server and both browsers on its loopback, where a firewall rule
    // (iptables on nftables) drops every UDP packet as it arrives, silently, as a network that
    // lets only HTTPS through does: the browser hears nothing, and the page waits its 2 s.
    const ns = `line-wt-${process.pid}`;
    execFileSync('ip', ['netns', 'add', ns]);
    const inNs = (...cmd) => execFileSync('ip', ['netns', 'exec', ns, ...cmd]);
    let blocked;
    try {
      inNs('ip', 'link', 'set', 'lo', 'up');
      inNs('iptables', '-A', 'INPUT', '-p', 'udp', '-j', 'DROP');
      const port = 7000 + Math.floor(1000 * random());
      blocked = await startServer({ port, netns: ns, webtransport: true });
      const launcher = path.join(OUT, `chromium-in-${ns}.sh`);
      writeFileSync(launcher, `#!/bin/sh\nexec ip netns exec ${ns} ${process.env.CHROMIUM || '/usr/bin/chromium'} "$@"\n`);
      chmodSync(launcher, 0o755);
      const a = await chromium('blocked-A', wavA, { executablePath: launcher });
      const b = await chromium('blocked-B', wavB, { executablePath: launcher });
      const joinSeconds = await call(a, b, { link: blocked.link });
      results.udpBlockedJoinSeconds = joinSeconds;
      assert.equal((await transportOf(a)).transport, 'websocket');
      assert.equal((await transportOf(b)).transport, 'websocket');
      // 2 s for WebTransport, then a WebSocket on loopback.
      assert.ok(joinSeconds >= 2 && joinSeconds < FALLBACK_JOIN_S, `in call ${joinSeconds} s after the click`);
      // `iptables -L -v -x`: the DROP rule's line starts with its packet count.
      const rule = inNs('iptables', '-L', 'INPUT', '-v', '-n', '-x').toString().split('\n').find((l) => /DROP/.test(l));
      assert.ok(Number(rule?.trim().split(/\s+/)[0]) > 0, `the pages did send UDP, and it was dropped: ${rule}`);
      assert.ok(b.console.some((m) => /WebTransport did not open: the session was not ready within 2000 ms/.test(m)),
        `B says why: ${b.console.join('\n')}`);
      await bothHear(a, b);
    } finally {
      await hangUpAll();
      await blocked?.stop();
      execFileSync('ip', ['netns', 'del', ns]);
    }
  }));

  test('Firefox calls Chromium: over WebTransport where it accepts the pinned hash, else a WebSocket within 2 s', () => guarded(async () => {
    pulse = await startPulse();
    const a = await chromium('ff-A', wavA);
    const b = await launchFirefox('ff-B', { tone: TONE_B, pulse: pulse.server });
    people.push(b);
    // 48 kHz: what Firefox calls run at in the browsers suite.
    const joinSeconds = await call(a, b, { paramsA: 'studio=1&mobile=1' });
    const sb = await transportOf(b);
    results.firefox = { version: b.version, transport: sb.transport, joinSeconds };
    if (sb.transport === 'webtransport') {
      assert.equal(sb.frameMs, 10, '10 ms at 48 kHz fits a datagram');
    } else {
      assert.equal(sb.transport, 'websocket');
      assert.ok(joinSeconds < FALLBACK_JOIN_S, `in call ${joinSeconds} s after the click`);
    }
    assert.equal((await transportOf(a)).transport, 'webtransport');
    await bothHear(a, b);
    await hangUpAll();
  }));
});
