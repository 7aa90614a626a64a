// A long call between two headless Chromium browsers on one machine (one clock): after the first
// seconds the playback ring never runs dry, the jitter buffer never underruns, the other side's
// audio is never resampled (the drift is 0, and the buffer must not mistake anything for it),
// and the latency stays flat. Figures per interval go to target/e2e/results.json. The suite
// runs LINE_LONG_CALL_SECONDS (90 by default); `just bench` runs ten minutes.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchPerson } from './lib/browser.mjs';
import { repoRoot, startServer } from './lib/server.mjs';
import { stats, waitState, withParams } from './lib/page.mjs';
import { recordResults } from './lib/results.mjs';
import { seededRandom } from './lib/seed.mjs';
import { writeTone } from './lib/wav.mjs';

const OUT = path.join(repoRoot, 'target/e2e');
const SECONDS = Number(process.env.LINE_LONG_CALL_SECONDS ?? 90);
const INTERVAL = SECONDS >= 300 ? 60 : 15;
const SETTLE = 10;

mkdirSync(OUT, { recursive: true });
const random = seededRandom('long call');
const people = [];
let server;

after(async () => {
  for (const p of people) await p.close().catch(() => {});
  await server?.stop();
});

test(`a ${SECONDS} s call stays clean and flat`, { timeout: (SECONDS + 120) * 1000 }, async () => {
  server = await startServer({});
  const tones = [300 + 1200 * random(), 3000 + 9000 * random()].map(Math.round);
  const wavs = tones.map((f) => {
    const file = path.join(OUT, `long-${f}.wav`);
    writeTone(file, { freq: f, amplitude: 0.5, seconds: 60 });
    return file;
  });
  const a = await launchPerson('long-A', { wav: wavs[0] });
  people.push(a);
  await a.page.goto(withParams(server.link, 'studio=1'));
  await waitState(a, 'ready');
  const link = await a.page.inputValue('#share-link');
  await a.page.click('#join');
  await waitState(a, 'waiting');
  const b = await launchPerson('long-B', { wav: wavs[1] });
  people.push(b);
  await b.page.goto(link);
  await waitState(b, 'ready');
  await b.page.click('#join');
  await waitState(b, 'in-call');
  await waitState(a, 'in-call');

  const keys = ['underruns', 'playbackXruns', 'edits', 'samplesDropped', 'samplesInserted', 'framesLost', 'framesConcealed', 'samplesConcealed'];
  const intervals = [];
  const worstRatio = { a: 0, b: 0 };
  let last = [await stats(a), await stats(b)];
  const start = Date.now();
  await new Promise((r) => setTimeout(r, SETTLE * 1000));
  let settled = [await stats(a), await stats(b)];
  last = settled;
  while (Date.now() - start < SECONDS * 1000) {
    // Every second: the playback speed in use, which must stay nominal on one clock.
    const until = Math.min(start + SECONDS * 1000, Date.now() + INTERVAL * 1000);
    const latency = { a: [], b: [] };
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 1000));
      const [sa, sb] = [await stats(a), await stats(b)];
      worstRatio.a = Math.max(worstRatio.a, Math.abs(sa.resampleRatioPpm));
      worstRatio.b = Math.max(worstRatio.b, Math.abs(sb.resampleRatioPpm));
      latency.a.push(sa.mouthToEarMs);
      latency.b.push(sb.mouthToEarMs);
    }
    const now = [await stats(a), await stats(b)];
    const diff = (i) => Object.fromEntries(keys.map((k) => [k, now[i][k] - last[i][k]]));
    const median = (v) => [...v].sort((x, y) => x - y)[v.length >> 1];
    intervals.push({
      endS: Math.round((Date.now() - start) / 1000),
      a: { ...diff(0), driftPpm: now[0].driftPpm, resampleRatioPpm: now[0].resampleRatioPpm, mouthToEarMs: median(latency.a), jitterTargetMs: now[0].jitterTargetMs, playbackTargetMs: now[0].playbackTargetMs },
      b: { ...diff(1), driftPpm: now[1].driftPpm, resampleRatioPpm: now[1].resampleRatioPpm, mouthToEarMs: median(latency.b), jitterTargetMs: now[1].jitterTargetMs, playbackTargetMs: now[1].playbackTargetMs },
    });
    console.log(`long call: ${JSON.stringify(intervals.at(-1))}`);
    last = now;
  }
  const totals = Object.fromEntries(['a', 'b'].map((who, i) => [who, Object.fromEntries(keys.map((k) => [k, last[i][k] - settled[i][k]]))]));
  const report = { seconds: SECONDS, settleS: SETTLE, tones, worstResampleRatioPpm: worstRatio, afterSettling: totals, intervals };
  recordResults({ longCall: report });
  console.log(`long call (also in target/e2e/results.json): ${JSON.stringify({ ...report, intervals: undefined })}`);
  for (const who of ['a', 'b']) {
    assert.ok(worstRatio[who] <= 20, `${who} played the other side ${worstRatio[who]} ppm off nominal on one clock`);
  }
});
