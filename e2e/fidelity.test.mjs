// Fidelity end to end: what is sent is what is heard. A native peer running line's own call
// engine (`line-loadgen tone-call`) sends two pure tones, generated sample by sample and paced by
// the system clock, to a headless Chromium on the same machine; the page's remote node is
// recorded sample-exactly in 2 s blocks at 5, 15, 25 and 35 s (and at 20 and 30 s, so that a
// block or two with an edit in it still leaves clean ones), and each block is fitted with two
// tones: frequency error (ppm), SNR (dB), glitches. Blocks where the engine counted nothing (no
// loss, edit, underrun, empty playback ring) and held its clock-drift correction steady must be
// exact: the frequency within 20 ppm of the tone sent played at that correction, SNR at least
// 85 dB (16-bit quantization allows about 93), no glitch. Every glitch anywhere must be one the
// engine accounted for (a counter, or a change of its correction).
// The engine may still decide, half a minute in, that the peer's clock drifts from the device's
// and resample for it (on this machine it has measured 20-100 ppm where both sides run on the
// system clock, through the null sink as Chromium drives it): blocks are judged against the
// correction it applied, and a correction that changes during a block is accounted for like an
// edit, and it must stay within what crystals could drift. The page's AudioContext runs at the
// device's rate (a PulseAudio null sink at 48 kHz), whatever the wire's: at 200 kHz what is
// checked is the whole conversion, the jitter buffer's sinc from 200 kHz down to 48 kHz. The
// browser's microphone (a WAV of two other tones at 48 kHz) goes the other way, through the
// capture side's sinc up to the wire rate, and is reported.
// Tones are drawn at random per run in 1-20 kHz, all inside the 48 kHz device's passband (the
// sinc's cutoff is at 21.5 kHz); the seed is printed (LINE_E2E_SEED repeats it).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchPerson } from './lib/browser.mjs';
import { startPulse } from './lib/pulse.mjs';
import { repoRoot, startServer } from './lib/server.mjs';
import { stats, waitState, withParams } from './lib/page.mjs';
import { analyze, clean, collect, startRecording } from './lib/record.mjs';
import { recordResults } from './lib/results.mjs';
import { seededRandom } from './lib/seed.mjs';
import { runTonePeer } from './lib/tonepeer.mjs';
import { writeTones } from './lib/wav.mjs';

const OUT = path.join(repoRoot, 'target/e2e');
// The peer stays in the call until the page hangs up, at most this long after it joined: the
// page's blocks count from its own recording's start, later than the peer's join by however long
// the page took to reach the call and start the tap, so a peer leaving on its own clock could cut
// the page's last block short.
const CALL_SECONDS = 120;
const BLOCKS = [5, 15, 20, 25, 30, 35];
const BLOCK_SECONDS = 2;
const AMPLITUDE = 0.4;
// The fidelity goal (BENCHMARKS.md, Goals) for a block the engine counted nothing in.
const MAX_ERROR_PPM = 20;
const MIN_SNR_DB = 85;
// The largest clock-drift correction a call on one machine may apply, ppm: crystals are within
// ±100 ppm of nominal; a correction beyond means the engine mistook something else for drift.
const MAX_CORRECTION_PPM = 100;

mkdirSync(OUT, { recursive: true });
const random = seededRandom('fidelity');
/** Two tones in 1-20 kHz at least 500 Hz apart, rounded to 0.1 Hz. */
function twoTones() {
  for (;;) {
    const [a, b] = [random(), random()].map((r) => Math.round((1000 + 19000 * r) * 10) / 10);
    if (Math.abs(a - b) >= 500) return [a, b];
  }
}

let server, pulse;
const results = {};

before(async () => {
  server = await startServer({});
  // A real-time output device: the fake one's clock runs slow at 128-frame buffers (see
  // pulse.mjs), which the page's buffer could only absorb with edits.
  pulse = await startPulse();
});

after(async () => {
  await server?.stop();
  await pulse?.stop();
  recordResults({ fidelity: results });
  console.log(`fidelity results (also in target/e2e/results.json):\n${JSON.stringify(results, null, 2)}`);
});

/** Runs the tone peer on `link` until it exits; resolves with its report. */
function tonePeer(link, { tones, heard, json }) {
  const args = ['--secs', String(CALL_SECONDS), '--until-hang-up', '--blocks', BLOCKS.join(','), '--block-secs', String(BLOCK_SECONDS), '--json', json];
  return runTonePeer(link, { tones, heard, args });
}

for (const [label, params] of [['200k', 'studio=1'], ['48k', 'studio=1&mobile=1']]) {
  describe(`fidelity at ${label}`, () => {
    test('what the peer sends is what the page plays; the other way is reported', async () => {
      const peerTones = twoTones();
      const micTones = twoTones();
      const wav = path.join(OUT, `fidelity-mic-${label}.wav`);
      writeTones(wav, { freqs: micTones, amplitude: AMPLITUDE, seconds: 60 });
      const p = await launchPerson(`fidelity-${label}`, { wav, pulse: pulse.server });
      try {
        await p.page.goto(withParams(server.link, params));
        await waitState(p, 'ready');
        const link = await p.page.inputValue('#share-link');
        await p.page.click('#join');
        await waitState(p, 'waiting');
        const peer = tonePeer(link, { tones: peerTones, heard: micTones, json: path.join(OUT, `fidelity-peer-${label}.json`) });
        await waitState(p, 'in-call', 15_000);
        await startRecording(p.page, BLOCKS, BLOCK_SECONDS);
        const recorded = await collect(p.page, BLOCKS.length, (BLOCKS.at(-1) + BLOCK_SECONDS + 10) * 1000);
        const final = await stats(p);
        // The peer joined first, so its own blocks ended before the page's.
        await p.page.click('#hangup');
        const peerReport = await peer;
        // What a context asked for nothing gets here: the device's rate.
        const deviceRate = await p.page.evaluate(async () => {
          const probe = new AudioContext();
          const rate = probe.sampleRate;
          await probe.close();
          return rate;
        });
        const heard = recorded.blocks.map((b, i) => ({
          atS: BLOCKS[i],
          counted: b.counted,
          correctionPpm: b.correctionPpm,
          ...analyze(b.samples, recorded.rate, peerTones, path.join(OUT, `fidelity-${label}-${BLOCKS[i]}s.f32`)),
        }));
        // Nothing counted, and the drift correction the same before and after the block.
        const exactBlock = (b) => clean(b.counted) && b.correctionPpm[0] === b.correctionPpm[1];
        const glitchesPerMinute = 60 * heard.reduce((n, b) => n + b.glitches.length, 0) / (heard.length * BLOCK_SECONDS);
        results[label] = {
          seed: random.seed, contextRate: recorded.rate, deviceRate, peerTones, micTones,
          pageHears: heard.map((b) => ({ atS: b.atS, errorPpm: b.tones.map((t) => t.errorPpm), snrDb: b.snrDb, glitches: b.glitches, counted: b.counted, correctionPpm: b.correctionPpm })),
          glitchesPerMinute,
          peerHears: peerReport.blocks.map((b) => ({ atS: b.atS, errorPpm: b.fidelity.tones.map((t) => t.errorPpm), snrDb: b.fidelity.snrDb, glitches: b.fidelity.glitches.length, counted: b.counted })),
          peerSentRate: peerReport.sentRate,
          page: {
            edits: final.edits, samplesDropped: final.samplesDropped, samplesInserted: final.samplesInserted,
            underruns: final.underruns, playbackXruns: final.playbackXruns, framesLost: final.framesLost,
            driftPpm: final.driftPpm, resampleRatioPpm: final.resampleRatioPpm, mouthToEarMs: final.mouthToEarMs,
            outputLatencyMs: final.outputLatencyMs,
          },
        };
        console.log(`fidelity ${label}: ${JSON.stringify(results[label])}`);
        assert.equal(recorded.rate, deviceRate, "the context runs at the device's rate, whatever the wire's");
        for (const b of heard) {
          if (b.glitches.length > 0) {
            assert.ok(!exactBlock(b), `${label} at ${b.atS} s: ${b.glitches.length} glitches the engine did not account for: ${JSON.stringify(b.glitches)}`);
          }
          if (b.atS < 15 || !exactBlock(b)) continue;
          // The correction plays the peer's audio this much faster, so its tones so much higher.
          const [correction] = b.correctionPpm;
          for (const t of b.tones) {
            assert.ok(Math.abs(t.errorPpm - correction) <= MAX_ERROR_PPM,
              `${label} at ${b.atS} s: ${t.sentHz} Hz heard at ${t.heardHz} Hz (${t.errorPpm.toFixed(2)} ppm, the drift correction ${correction.toFixed(2)} ppm)`);
          }
          assert.ok(b.snrDb >= MIN_SNR_DB, `${label} at ${b.atS} s: SNR ${b.snrDb.toFixed(1)} dB`);
        }
        const exact = heard.filter((b) => b.atS >= 15 && exactBlock(b));
        assert.ok(exact.length >= 1, `${label}: every block from 15 s on had something counted or a changing correction: ${JSON.stringify(heard.map((b) => [b.counted, b.correctionPpm]))}`);
        assert.ok(Math.abs(final.resampleRatioPpm) <= MAX_CORRECTION_PPM,
          `${label}: a clock-drift correction of ${final.resampleRatioPpm.toFixed(1)} ppm on one machine (estimate ${final.driftPpm.toFixed(1)} ppm)`);
      } finally {
        await p.close();
      }
    });
  });
}
