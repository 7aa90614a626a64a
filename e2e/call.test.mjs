// End to end: real calls between two headless Chromium browsers through the real line-server,
// behind a TCP proxy that records every byte the server receives. Run by `just test` after the
// builds (a busy machine makes a 200 kHz call underrun), or alone with `just e2e`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { launchPerson } from './lib/browser.mjs';
import { cpuMeter } from './lib/cpu.mjs';
import { startProxy } from './lib/proxy.mjs';
import { freePort, repoRoot, startServer } from './lib/server.mjs';
import { clickGaps, mouthToEar, spread, startClicks, stopClicks } from './lib/latency.mjs';
import { hear, percentile, sampleLatency, stats, waitError, waitState, withParams } from './lib/page.mjs';
import { findToneRun, keyEncodings, parseClientStream, tonePcm } from './lib/wire.mjs';
import { analyze, clean, collect, startRecording } from './lib/record.mjs';
import { recordResults } from './lib/results.mjs';
import { seededRandom } from './lib/seed.mjs';
import { twoPeopleTones, writeClicks } from './lib/wav.mjs';
import { failureReporting } from './lib/failures.mjs';

const OUT = path.join(repoRoot, 'target/e2e');
// What A's and B's microphones play: drawn per run (the seed is printed), apart by an octave.
const random = seededRandom('call');
const AMPLITUDE = 0.5;
const MEASURE_MS = 10_000;

mkdirSync(OUT, { recursive: true });
const { toneA: TONE_A, toneB: TONE_B, wavA, wavB } = twoPeopleTones(random, OUT, AMPLITUDE);
// For the measured mouth to ear: a click train in each microphone, its gaps drawn per run.
const clicksA = path.join(OUT, 'clicks-a.wav');
const clicksB = path.join(OUT, 'clicks-b.wav');
writeClicks(clicksA, { gapsMs: clickGaps(random) });
writeClicks(clicksB, { gapsMs: clickGaps(random) });
const CLICKS_MS = 10_000;
/** How far the estimate's p50 may be from the measured p50, ms, in a steady call; see the test. */
const ESTIMATE_WITHIN_MS = 3;

/**
 * The standard error of a p50 taken from `spread()`'s `{ p50, p95, n }`, ms: the median of n
 * draws of a normal of sigma (p95 - p50) / 1.645 is off by about 1.2533 sigma / sqrt(n).
 */
function p50Error({ p50, p95, n }) {
  return (1.2533 * ((p95 - p50) / 1.645)) / Math.sqrt(Math.max(n, 1));
}
const round = (x) => Math.round(10 * x) / 10;

let port, proxy, server;
const people = [];
const leaves = []; // every leaf the suite used, for the privacy check
const results = {}; // figures for the suite's output and BENCHMARKS.md

async function person(name, opts) {
  const p = await launchPerson(name, opts);
  people.push(p);
  return p;
}

async function shot(p, name) {
  await p.page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
}

/** On a failure, what each browser's console and the server's log said. */
const { guarded } = failureReporting(people, () => server);

before(async () => {
  port = await freePort();
  proxy = await startProxy(port);
  server = await startServer({ port, siteurl: `http://127.0.0.1:${proxy.port}` });
});

after(async () => {
  for (const p of people) await p.close().catch(() => {});
  await server?.stop();
  await proxy?.close();
  recordResults(results);
  console.log(`e2e results (also in target/e2e/results.json):\n${JSON.stringify(results, null, 2)}`);
});

/** A opens the printed link, B the link A's page shows; both join; returns both, in call. */
async function startCall(label, params, [micA, micB] = [wavA, wavB]) {
  const a = await person(`${label}-A`, { wav: micA });
  await a.page.goto(withParams(server.link, params));
  await waitState(a, 'ready');
  const shared = await a.page.inputValue('#share-link');
  assert.match(a.page.url(), /#leaf_[A-Za-z0-9_-]{43}$/, 'the page replaced #generate_leaf with a leaf');
  assert.equal(shared.split('#')[1], a.page.url().split('#')[1], 'the shown link carries the same leaf');
  leaves.push(Buffer.from(shared.split('#leaf_')[1], 'base64url'));
  await shot(a, `${label}-1-link`);
  await a.page.click('#join');
  await waitState(a, 'waiting');
  await shot(a, `${label}-2-waiting`);

  const b = await person(`${label}-B`, { wav: micB });
  await b.page.goto(shared);
  await waitState(b, 'ready');
  await b.page.click('#join');
  await waitState(b, 'in-call');
  await waitState(a, 'in-call');
  return { a, b, shared };
}

/** Frames sent by one side and received by the other over the measurement window. */
async function measureFlow(a, b, ms) {
  const [a0, b0] = [await stats(a), await stats(b)];
  const cpu = [cpuMeter(a.pid), cpuMeter(b.pid)];
  const [latA, latB] = await Promise.all([sampleLatency(a, ms), sampleLatency(b, ms)]);
  const [cpuA, cpuB] = cpu.map((m) => m.stop());
  const [a1, b1] = [await stats(a), await stats(b)];
  const flow = (s0, s1, r0, r1) => ({
    sent: s1.framesSent - s0.framesSent,
    received: r1.framesReceived - r0.framesReceived,
  });
  return { ab: flow(a0, a1, b0, b1), ba: flow(b0, b1, a0, a1), a1, b1, latA, latB, cpuA, cpuB };
}

/**
 * The pitch each side hears, from 2 s of its remote node recorded sample-exactly: the other
 * side's tone fitted by least squares, as an error in ppm (one clock: 0 is right), with what the
 * engine counted meanwhile (an edit or a loss in the block blurs the fit, and is accounted for).
 */
async function heardPitch(label, a, b) {
  await Promise.all([a, b].map((p) => startRecording(p.page, [0.2], 2)));
  const [ra, rb] = await Promise.all([a, b].map((p) => collect(p.page, 1, 10_000)));
  const fit = (rec, tone, who) => {
    const [block] = rec.blocks;
    const f = analyze(block.samples, rec.rate, [tone], path.join(OUT, `${label}-${who}-hears.f32`));
    return { tone, errorPpm: f.tones[0].errorPpm, snrDb: f.snrDb, glitches: f.glitches.length, counted: block.counted };
  };
  return { a: fit(ra, TONE_B, 'a'), b: fit(rb, TONE_A, 'b') };
}

/** The line id and join token of a shared link, derived from its leaf as docs/PROTOCOL.md says. */
function lineOf(link) {
  const leaf = Buffer.from(link.split('#leaf_')[1], 'base64url');
  const derive = (label) => Buffer.from(hkdfSync('sha512', leaf, Buffer.alloc(0), label, 16)).toString('base64url');
  return { line: derive('line 1.0 line id'), join: derive('line 1.0 join') };
}

/** The query of each WebSocket request the proxy forwarded on `line`, oldest first. */
function socketsOn(line) {
  return proxy.requests()
    .filter((r) => r.upgrade && r.request.startsWith('GET /ws?'))
    .map((r) => ({ ...r, query: new URL(r.request.split(' ')[1], 'http://x').searchParams }))
    .filter((r) => r.query.get('line') === line);
}

/** A WebSocket on `line` straight to the server, as someone with the API key and a line id but
 *  not the leaf would open it (`join` made up); resolves with its socket once upgraded. */
function holdLine(line, join) {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: '127.0.0.1', port, path: `/ws?apikey=${server.apikey}&line=${line}&join=${join}`,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      },
    });
    request.on('upgrade', (_response, socket) => resolve(socket));
    request.on('response', (response) => reject(new Error(`not upgraded: ${response.statusCode}`)));
    request.on('error', reject);
    request.end();
  });
}

/** Whether the page shows an error that ended the call. */
const fatalShown = (p) => p.page.evaluate(() => document.body.dataset.error ?? null);

function checkHearing(who, heard, other, own) {
  assert.ok(heard[other] >= AMPLITUDE / 2,
    `${who} hears the other's ${other} Hz at ${heard[other].toFixed(3)}, less than half of ${AMPLITUDE}`);
  assert.ok(heard[own] < 0.02, `${who} hears its own ${own} Hz at ${heard[own].toFixed(3)}`);
}

const CALLS = [
  ['studio-200k', 'studio=1'],
  ['studio-48k', 'studio=1&mobile=1'],
  ['studio-200k-2.5ms', 'studio=1&frame=2.5'], // the low-latency goal (BENCHMARKS.md, Goals) is set for 2.5 ms frames
  // The jitter buffer in the worker (docs/CLIENT.md), beside the audio thread's default, in one run.
  ['studio-200k-worker', 'studio=1&playout=worker'],
  ['studio-48k-worker', 'studio=1&mobile=1&playout=worker'],
];
for (const [label, params] of CALLS) {
  describe(`a call at ${label}`, () => {
    let a, b, shared;

    test('both reach "in call", and each hears the other and not itself', () => guarded(async () => {
      ({ a, b, shared } = await startCall(label, params));
      // Let the jitter buffers settle before measuring.
      await new Promise((r) => setTimeout(r, 1500));
      const heardA = await hear(a, [TONE_A, TONE_B]);
      const heardB = await hear(b, [TONE_A, TONE_B]);
      results[label] = { heardByA: heardA, heardByB: heardB };
      await shot(a, `${label}-3-in-call`);
      checkHearing('A', heardA, TONE_B, TONE_A);
      checkHearing('B', heardB, TONE_A, TONE_B);
    }));

    test('real-time flow: 98 % of frames arrive, no decryption failures or replays; latency', () => guarded(async () => {
      let m = await measureFlow(a, b, MEASURE_MS);
      const ratio = (f) => f.received / f.sent;
      if (Math.min(ratio(m.ab), ratio(m.ba)) < 0.98) {
        // Loss on loopback means a stalled browser, which a shared 2-core machine produces now
        // and then: measure once more, and say so.
        console.log(`${label}: flow below 98 % (${JSON.stringify([m.ab, m.ba])}); measuring once more`);
        m = await measureFlow(a, b, MEASURE_MS);
      }
      const lat = [...m.latA, ...m.latB];
      Object.assign(results[label], {
        flowAtoB: m.ab, flowBtoA: m.ba,
        underruns: { a: m.a1.underruns, b: m.b1.underruns },
        playbackXruns: { a: m.a1.playbackXruns, b: m.b1.playbackXruns },
        recordsDropped: { a: m.a1.recordsDropped, b: m.b1.recordsDropped },
        mouthToEarMs: {
          p50: percentile(lat, 50), p95: percentile(lat, 95), samples: lat.length,
          // The window's second half: the call settled (a real call lasts minutes, not seconds).
          laterP50: percentile([...m.latA.slice(m.latA.length >> 1), ...m.latB.slice(m.latB.length >> 1)], 50),
        },
        wireRate: m.a1.wireRate, frameMs: m.a1.frameMs, rttMs: m.a1.rttMs,
        jitterMs: { depth: m.b1.jitterDepthMs, target: m.b1.jitterTargetMs, arrival: m.b1.arrivalJitterMs },
        driftPpm: { a: m.a1.driftPpm, b: m.b1.driftPpm },
        // Where the engine's own time goes: playback-ring fill (lowest at a wake, and kept),
        // longest gap between engine wakes, and what the AudioContext reports for the device.
        playback: Object.fromEntries([['a', m.a1], ['b', m.b1]].map(([k, s]) => [k, {
          lowestFillMs: s.playbackFillMs, targetMs: s.playbackTargetMs, wakeGapMs: s.wakeGapMs,
        }])),
        outputLatencyMs: m.a1.outputLatencyMs,
        // Each browser's whole process tree (renderer, audio, GPU, network), % of one core.
        cpuPercentOfCore: { a: m.cpuA.total, b: m.cpuB.total },
        cpuByThread: { a: m.cpuA.threads, b: m.cpuB.threads },
      });
      const pitch = await heardPitch(label, a, b);
      Object.assign(results[label], {
        pitch,
        edits: { a: m.a1.edits, b: m.b1.edits },
        resampleRatioPpm: { a: m.a1.resampleRatioPpm, b: m.b1.resampleRatioPpm },
      });
      console.log(`${label}: ${JSON.stringify(results[label])}`);
      for (const [who, p] of Object.entries(pitch)) {
        // A block with an edit, a loss or an empty ring in it is blurred, and accounted for.
        if (!clean(p.counted)) continue;
        assert.ok(Math.abs(p.errorPpm) <= 20, `${who} hears ${p.tone} Hz off by ${p.errorPpm.toFixed(1)} ppm`);
        assert.equal(p.glitches, 0, `${who} heard ${p.glitches} glitches the engine did not count`);
      }
      assert.ok(m.ab.sent > 0.9 * (MEASURE_MS / m.a1.frameMs), `A sent ${m.ab.sent} frames in ${MEASURE_MS} ms`);
      assert.ok(ratio(m.ab) >= 0.98, `B received ${m.ab.received} of A's ${m.ab.sent} frames`);
      assert.ok(ratio(m.ba) >= 0.98, `A received ${m.ba.received} of B's ${m.ba.sent} frames`);
      for (const s of [m.a1, m.b1]) {
        assert.equal(s.decryptFailures, 0, 'no decryption failures');
        assert.equal(s.replays, 0, 'no replays');
        // Counted on both playout paths (0 on the worker's); a malformed record is a bug.
        assert.ok(Number.isInteger(s.recordsDropped), `recordsDropped is ${s.recordsDropped}`);
        assert.equal(s.recordsMalformed, 0, 'no malformed playout records');
      }
      for (const p of [a, b]) {
        const shown = await p.page.textContent('[data-stat="records"]');
        assert.match(shown, /^\d+ \/ \d+$/, `the statistics panel shows playout records: ${shown}`);
      }
      assert.ok(lat.length > 50, 'mouth-to-ear estimates were recorded');
      // The estimate uses the device latency the context reports now, not what it said at the
      // start (Chromium reports outputLatency 0 until the device runs).
      const reported = await a.page.evaluate(() => {
        const c = window.line.audioContext;
        return 1000 * ((c.baseLatency ?? 0) + (c.outputLatency ?? 0));
      });
      assert.ok(Math.abs(reported - m.a1.outputLatencyMs) < 1,
        `the engine counts ${m.a1.outputLatencyMs} ms of device latency, the context reports ${reported} ms`);
    }));

    if (label === 'studio-200k') {
      test('a third person on the full line is told so', () => guarded(async () => {
        const c = await person(`${label}-C`, { wav: wavA });
        await c.page.goto(shared);
        await waitState(c, 'ready');
        await c.page.click('#join');
        const shown = await waitError(c, 'line-full');
        assert.equal(shown.error, 'line-full');
        await shot(c, 'error-line-full');
        // The call goes on.
        const before = (await stats(b)).framesReceived;
        await b.page.waitForFunction((n) => window.line.stats().framesReceived > n + 20, before, { timeout: 5_000 });
        await c.close();
      }));
    }

    if (label === 'studio-48k') {
      test('the server killed mid-call and started again: both reconnect, audio flows within 5 s', () => guarded(async () => {
        server.kill();
        await waitState(a, 'reconnecting', 10_000);
        await waitState(b, 'reconnecting', 10_000);
        await shot(a, 'reconnecting');
        const restarted = Date.now();
        server = await startServer({ port, siteurl: `http://127.0.0.1:${proxy.port}`, apikey: server.apikey });
        await waitState(a, 'in-call', 10_000);
        await waitState(b, 'in-call', 10_000);
        const before = [(await stats(a)).framesReceived, (await stats(b)).framesReceived];
        await a.page.waitForFunction((n) => window.line.stats().framesReceived > n + 10, before[0], { timeout: 10_000 });
        await b.page.waitForFunction((n) => window.line.stats().framesReceived > n + 10, before[1], { timeout: 10_000 });
        const seconds = (Date.now() - restarted) / 1000;
        results.reconnectSeconds = seconds;
        assert.ok(seconds <= 5, `audio flowed again ${seconds} s after the restart`);
        await new Promise((r) => setTimeout(r, 1000));
        checkHearing('A after reconnect', await hear(a, [TONE_A, TONE_B]), TONE_B, TONE_A);
        checkHearing('B after reconnect', await hear(b, [TONE_A, TONE_B]), TONE_A, TONE_B);
        assert.equal(a.page.url().split('#')[1], shared.split('#')[1], 'no reload: same page, same leaf');
      }));

      test('a frozen connection: the page moves to a new one, takes its slot back, audio flows within 5 s', () => guarded(async () => {
        const { line, join } = lineOf(shared);
        const sockets = socketsOn(line);
        // Every connection carries the line's join token, and A's (the first on the line) one
        // participant id across all its reconnects.
        assert.ok(sockets.every((r) => r.query.get('join') === join), 'join tokens as PROTOCOL.md derives them');
        const me = sockets[0].query.get('participant');
        assert.match(me, /^[A-Za-z0-9_-]{22}$/);
        assert.ok(sockets.filter((r) => r.query.get('participant') === me).length >= 2, 'A reconnected as itself after the restart');
        const live = sockets.filter((r) => r.open && r.query.get('participant') === me);
        assert.equal(live.length, 1, 'A has one live connection');
        const [a0, b0] = [await stats(a), await stats(b)];
        const takenOver = async () => {
          const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          return Number(/^line_slots_taken_over_total (\d+)$/m.exec(text)[1]);
        };
        const takenBefore = await takenOver();

        // A's network goes away: nothing arrives either way, nothing closes.
        proxy.freeze(live[0].index);
        const frozen = Date.now();
        await a.page.waitForFunction((n) => window.line.stats().reconnects > n, a0.reconnects, { timeout: 10_000 });
        await a.page.waitForFunction((n) => window.line.stats().framesReceived > n + 50, a0.framesReceived, { timeout: 10_000 });
        await b.page.waitForFunction((n) => window.line.stats().framesReceived > n + 50, b0.framesReceived, { timeout: 10_000 });
        const seconds = (Date.now() - frozen) / 1000;
        results.frozenConnectionSeconds = seconds;
        const [a1, b1] = [await stats(a), await stats(b)];
        results.frozenConnection = {
          seconds, reconnects: { a: a1.reconnects - a0.reconnects, b: b1.reconnects - b0.reconnects },
          decryptFailures: { a: a1.decryptFailures - a0.decryptFailures, b: b1.decryptFailures - b0.decryptFailures },
        };
        console.log(`frozen connection: ${JSON.stringify(results.frozenConnection)}`);
        assert.ok(seconds <= 5, `audio flowed both ways again ${seconds} s after the freeze`);
        // The new connection took A's slot over (the relay did not wait 30 s for the frozen one).
        assert.ok(await takenOver() > takenBefore, 'the relay counted the takeover');
        const now = socketsOn(line).filter((r) => r.open && r.query.get('participant') === me);
        assert.equal(now.length, 1, 'A is back on one new connection');
        assert.notEqual(now[0].index, live[0].index);
        assert.equal(await fatalShown(a), null, 'no error on A');
        assert.equal(await fatalShown(b), null, 'no error on B');
        await waitState(a, 'in-call', 1000);
        await waitState(b, 'in-call', 1000);
        await new Promise((r) => setTimeout(r, 1000));
        checkHearing('A after the freeze', await hear(a, [TONE_A, TONE_B]), TONE_B, TONE_A);
        checkHearing('B after the freeze', await hear(b, [TONE_A, TONE_B]), TONE_A, TONE_B);
      }));
    }

    test('hanging up ends the call for one and leaves the other waiting', () => guarded(async () => {
      await b.page.click('#hangup');
      await waitState(b, 'ended');
      await waitState(a, 'waiting');
      await shot(b, `${label}-4-ended`);
      await a.page.click('#hangup');
      await waitState(a, 'ended');
      await a.close();
      await b.close();
    }));

    test('mouth to ear measured with clicks, both ways: the estimate agrees', () => guarded(async () => {
      const { a, b } = await startCall(`${label}-clicks`, params, [clicksA, clicksB]);
      // Let the jitter buffers settle before measuring.
      await new Promise((r) => setTimeout(r, 2000));
      const measure = async () => {
        await Promise.all([a, b].map((p) => startClicks(p.page)));
        await new Promise((r) => setTimeout(r, CLICKS_MS));
        const [ra, rb] = await Promise.all([a, b].map((p) => stopClicks(p.page)));
        // B's estimate is of what A sends, and A's of what B sends.
        const way = (from, to) => {
          const { delays, heard } = mouthToEar(from, to);
          const [measured, estimated] = [spread(delays), spread(to.estimates)];
          return { measured, estimated, heard, offMs: round(estimated.p50 - measured.p50) };
        };
        const [aToB, bToA] = [way(ra, rb), way(rb, ra)];
        // Two p50s of a delay that wanders during the measurement differ by chance: by twice
        // their standard error at most, beside the bar a steady call must meet.
        const chance = Math.sqrt([aToB, bToA].reduce((sum, w) => sum + p50Error(w.measured) ** 2 + p50Error(w.estimated) ** 2, 0)) / 2;
        return {
          aToB, bToA, meanOffMs: round((aToB.offMs + bToA.offMs) / 2),
          withinMs: round(Math.max(ESTIMATE_WITHIN_MS, 2 * chance)),
          deviceMs: { a: round(ra.deviceMs), b: round(rb.deviceMs) }, contextRate: ra.rate,
        };
      };
      let m = await measure();
      if (!(Math.abs(m.meanOffMs) <= m.withinMs)) {
        // Two browsers on a shared 2-core machine now and then stall for longer than a
        // measurement can average out: measure once more, and say so.
        console.log(`${label}: estimate ${m.meanOffMs} ms off the clicks (${JSON.stringify(m)}); measuring once more`);
        m = await measure();
      }
      results[label] = { ...results[label], mouthToEarMeasured: m };
      const said = (w) => `measured p50 ${w.measured.p50} / p95 ${w.measured.p95} ms (${w.measured.n} clicks), `
        + `estimated ${w.estimated.p50} / ${w.estimated.p95} ms`;
      console.log(`${label}: mouth to ear A→B ${said(m.aToB)}; B→A ${said(m.bToA)}: ${JSON.stringify(m)}`);
      for (const [way, d] of [['A→B', m.aToB], ['B→A', m.bToA]]) {
        // Each direction heard most of the clicks sent meanwhile (one every 80-554 ms).
        assert.ok(d.measured.n >= CLICKS_MS / 554 / 2, `${way}: only ${d.measured.n} of ${d.heard} clicks heard matched`);
      }
      // Each direction's estimate (p50) against its clicks (p50), the two differences averaged.
      // A browser's wakes come a varying time after its audio thread's bursts (10 ms at 200 kHz):
      // its capture times read that much early and its ring's wait that much short, so its
      // lateness moves the two directions' estimates by as much in opposite directions, and the
      // mean leaves it out. On the loaded 2-core machine one direction alone was seen up to 4 ms
      // off either way, the mean within 2.2 ms in 7 of 8 measurements (4.7 once, in a window
      // where one direction's latency stepped: hence one more measurement before failing). An
      // estimate that took the ring's fill as found at a wake and the jitter buffer's depth after
      // the last pull was 3.5-4.3 ms low at 48 kHz and 5.9-6.8 ms low at 200 kHz in the mean,
      // low in both directions. Two browsers at 2.5 ms frames on two cores are not steady: their
      // delay wandered by 100 ms within a measurement (p95 400 against p50 290 ms), with 10-15
      // clicks matched, where two p50s differ by tens of ms by chance alone; the bar widens with
      // that chance (`withinMs`) and stays at ESTIMATE_WITHIN_MS for a steady call.
      assert.ok(Math.abs(m.meanOffMs) <= m.withinMs,
        `the engine's estimate is ${m.meanOffMs} ms off the clicks' mouth to ear (p50, mean of both directions; within ${m.withinMs} ms by chance)`);
      await a.close();
      await b.close();
    }));
  });
}

describe('errors a person can act on', () => {
  test('a wrong API key', () => guarded(async () => {
    const p = await person('wrong-key', { wav: wavA });
    const wrong = server.link.replace(/apikey=[A-Za-z]+/, `apikey=${'x'.repeat(80)}`);
    await p.page.goto(wrong);
    await waitState(p, 'ready');
    await p.page.click('#join');
    const shown = await waitError(p, 'api-key-refused');
    assert.match(shown.message, /did not accept the API key/);
    await shot(p, 'error-api-key');
    await p.close();
  }));

  test('a line held by someone without the link', () => guarded(async () => {
    // Someone who learnt this link's line id, but not its leaf, took the line first.
    const link = server.link.replace('#generate_leaf', `#leaf_${randomBytes(32).toString('base64url')}`);
    const squatter = await holdLine(lineOf(link).line, randomBytes(16).toString('base64url'));
    const p = await person('line-taken', { wav: wavA });
    await p.page.goto(link);
    await waitState(p, 'ready');
    await p.page.click('#join');
    const shown = await waitError(p, 'line-taken');
    assert.equal(shown.error, 'line-taken', 'an error that ends the attempt, not a notice');
    assert.match(shown.message, /without this link's key/);
    assert.equal(await p.page.isVisible('#error-action'), true, 'the page offers a new link');
    await shot(p, 'error-line-taken');
    squatter.destroy();
    await p.close();
  }));

  test('a malformed leaf', () => guarded(async () => {
    const p = await person('bad-leaf', { wav: wavA });
    await p.page.goto(server.link.replace('#generate_leaf', '#leaf_tooShort'));
    const shown = await waitError(p, 'bad-leaf');
    assert.ok(shown.message.length > 0);
    await shot(p, 'error-bad-leaf');
    await p.close();
  }));

  test('a link without a leaf offers to make one', () => guarded(async () => {
    const p = await person('no-leaf', { wav: wavA });
    await p.page.goto(server.link.split('#')[0]);
    await waitError(p, 'no-leaf');
    await shot(p, 'error-no-leaf');
    assert.equal(await p.page.isVisible('#error-action'), true, 'the page offers a way out');
    await p.page.click('#error-action');
    await waitState(p, 'ready');
    assert.match(p.page.url(), /#leaf_[A-Za-z0-9_-]{43}$/, 'a new leaf was made');
    await p.close();
  }));

  test('waiting alone past the server\'s limit, then waiting again', () => guarded(async () => {
    const waiting = await startServer({ env: { MAX_WAIT_ALONE: '3s' } });
    try {
      const p = await person('waited-too-long', { wav: wavA });
      await p.page.goto(waiting.link);
      await waitState(p, 'ready');
      await p.page.click('#join');
      await waitState(p, 'waiting');
      const shown = await waitError(p, 'waited-too-long', 15_000);
      assert.match(shown.message, /nobody else joined/i);
      assert.equal(await p.page.isVisible('#notice'), false, 'one message, not two');
      assert.equal(await p.page.textContent('#error-action'), 'Wait again');
      await shot(p, 'error-waited-too-long');
      assert.match(waiting.log(), /WaitedTooLong/, 'the server closed it for waiting');
      await p.page.click('#error-action');
      await waitState(p, 'waiting');
      await p.close();
    } finally {
      await waiting.stop();
    }
  }));

  test('the microphone denied', () => guarded(async () => {
    const p = await person('no-mic', { wav: wavA, allowMic: false });
    await p.page.goto(server.link);
    await waitState(p, 'ready');
    await p.page.click('#join');
    await waitError(p, 'mic-denied');
    await shot(p, 'error-mic-denied');
    await p.close();
  }));
});

describe('privacy: what the server received', () => {
  test('neither a leaf nor a run of either tone\'s samples reached the server', () => guarded(async () => {
    const streams = proxy.streams();
    let heads = 0, binary = 0, bytes = 0;
    assert.ok(leaves.length >= 2, 'the calls above recorded their leaves');
    for (const raw of streams) {
      bytes += raw.length;
      const { heads: h, payloads } = parseClientStream(raw);
      heads += h.length;
      const parts = [raw, ...h.map((x) => Buffer.from(x, 'latin1')), ...payloads.map((p) => p.payload)];
      for (const leaf of leaves) {
        for (const enc of keyEncodings(leaf)) {
          for (const part of parts) assert.equal(part.indexOf(enc), -1, 'a leaf reached the server');
        }
      }
      for (const { opcode, payload } of payloads) {
        if (opcode !== 2) continue;
        binary++;
        for (const [freq, rate] of [[TONE_A, 200000], [TONE_B, 200000], [TONE_A, 48000], [TONE_B, 48000]]) {
          const found = findToneRun(payload, { freq, rate, amplitude: AMPLITUDE });
          assert.equal(found, null, `a run of the ${freq} Hz tone at ${rate} Hz reached the server`);
        }
      }
    }
    // The check can fail: the same search finds the tone in plaintext PCM of either rate.
    for (const [freq, rate] of [[TONE_A, 200000], [TONE_B, 48000]]) {
      assert.notEqual(findToneRun(tonePcm({ freq, rate, amplitude: AMPLITUDE, count: 400 }), { freq, rate, amplitude: AMPLITUDE }), null);
    }
    // Its log at the default level names no line and no join token: with both, someone could
    // hold a line while it is empty.
    const log = server.log();
    for (const leaf of leaves) {
      const { line, join } = lineOf(`#leaf_${leaf.toString('base64url')}`);
      assert.equal(log.includes(line), false, 'a line id in the server log');
      assert.equal(log.includes(join), false, 'a join token in the server log');
    }
    results.privacy = { connections: streams.length, httpRequests: heads, binaryFrames: binary, bytes };
    assert.ok(binary > 2000, `the proxy saw the calls' frames (${binary})`);
  }));
});
