// Impaired networks, behaviour only: a real call through the real server survives every network
// profile and recovers after an outage. The server runs in one network namespace, and the two
// tone peers (`line-loadgen tone-call`, line's own call engine natively) in two: one across
// `line-netem` (the caller on the impaired network), one beside the server. So each direction of
// the audio crosses the impaired link once, as TCP segments that it delays, jitters, drops and
// rate-limits, and the peers' real TCP stacks retransmit.
//
// For each profile (lan, home, wifi, mobile) and each transport (a WebSocket; WebTransport
// datagrams, in the longest frames that fit one, as a page sends): a call of CALL_SECONDS, the link taken down for
// OUTAGE_MS in its middle. Both peers must finish the call (neither side's connection fails), no
// frame may fail decryption, audio must flow before the outage (most of its windows carry real,
// not concealed, audio), stop during it (the outage did happen), and flow again within
// MAX_RECOVERY_S after it. How long recovery took, and what was received, lost and concealed, are
// reported (target/e2e/results.json, "network"), never judged. On WebTransport across a profile
// that loses 1 % or more, the repair frames must work: a good share of what the link lost is
// rebuilt, and away from the outage the receiver conceals well under what it would without them
// (a frame concealed for every frame lost). Tones and the link's random draws come from a seed
// printed per run (LINE_E2E_SEED repeats it).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNetwork } from './lib/netem.mjs';
import { recordResults } from './lib/results.mjs';
import { seededRandom } from './lib/seed.mjs';
import { runTonePeer } from './lib/tonepeer.mjs';
import { repoRoot, startServer } from './lib/server.mjs';

const OUT = path.join(repoRoot, 'target/e2e');
const PROFILES = (process.env.LINE_NETWORK_PROFILES ?? 'lan,home,wifi,mobile').split(',');
const TRANSPORTS = (process.env.LINE_NETWORK_TRANSPORTS ?? 'websocket,webtransport').split(',');
// Extra parameters of the call link, e.g. `mobile=1` for a 48 kHz call (200 kHz without).
const LINK_PARAMS = process.env.LINE_NETWORK_LINK_PARAMS ?? '';
// Over a WebSocket, "mobile" carries the mobile link's 48 kHz, as a person on such a network
// would use: TCP through 3 % loss at 80 ms RTT carries 1-3 Mbit/s, below a 200 kHz call's 3.3, so
// a 200 kHz call there flows in some windows and not others, by the draw of the losses (18, 12
// and 3 of 23 windows in three runs). Over datagrams, with repair, 200 kHz flows there.
const WEBSOCKET_PARAMS = { mobile: 'mobile=1' };
// Long enough after the outage for a recovery of MAX_RECOVERY_S to be seen, and a second of audio after it.
const CALL_SECONDS = 20;
// When the outage starts, after both peers were started (joining takes well under this).
const OUTAGE_AFTER_MS = 6_000;
const OUTAGE_MS = 2_000;
// The counters are read this often; a window between two readings is judged on its own.
const WINDOW_S = 0.25;
// A window carries audio when at least half its frames arrived and at most a quarter of what
// it played was made up.
const MIN_RECEIVED = 0.5;
const MAX_CONCEALED = 0.25;
// Audio flows again once this many windows in a row carry audio.
const FLOWING_RUN = 4;
// "Recovers": audio flows again within this long after the link came back.
const MAX_RECOVERY_S = 8;
// Repair on lossy profiles (loss at least REPAIR_LOSS): frames rebuilt must be at least this
// share of the packets the link lost towards the peer (some of which are repair frames, QUIC's
// acknowledgements, or lost two to a group: about 0.6 of them are rebuilt), and the frames
// concealed away from the outage at most this share of the frames missing there (lost or
// rebuilt; without repair, every one of them is concealed).
const REPAIR_LOSS = 0.01;
const MIN_REBUILT_SHARE = 0.3;
const MAX_CONCEALED_SHARE = 0.6;
// "Away from the outage": not in the call's first second, nor from the outage to this long after.
const AFTER_OUTAGE_MS = 3_000;
const PORT = 7777;

mkdirSync(OUT, { recursive: true });
const random = seededRandom('network');
const linkSeed = Math.floor(random() * 2 ** 32);
const results = { seed: random.seed, linkSeed, profiles: {} };

let network, server;

before(async () => {
  network = await startNetwork({ profile: 'lan', seed: linkSeed });
  console.log(`network: line-netem ready (seed ${network.ready.seed}), far side ${network.farAddr}`);
  server = await startServer({ netns: network.far, bind: network.farAddr, port: PORT, webtransport: true });
});

after(async () => {
  await server?.stop();
  await network?.stop();
  recordResults({ network: results });
  console.log(`network results (also in target/e2e/results.json):\n${JSON.stringify(results, null, 2)}`);
});

/** A tone in 1-20 kHz, rounded to 0.1 Hz. */
const tone = () => Math.round((1000 + 19000 * random()) * 10) / 10;

/** Runs a tone peer inside namespace `ns` until it exits; resolves with its report. */
function tonePeer(ns, link, { tones, heard, secs, untilHangUp, transport, json }) {
  const args = ['--secs', String(secs), '--blocks', '2', '--block-secs', '1', '--timeline-secs', String(WINDOW_S), '--transport', transport, '--json', json];
  if (untilHangUp) args.push('--until-hang-up');
  return runTonePeer(link, { tones, heard, args, wrap: (argv) => network.inNamespace(ns, argv), label: `tone peer in ${ns}` });
}

/**
 * The windows between successive timeline points: when each ended (wall clock, ms), and whether
 * it carried audio.
 */
function windows(report) {
  const frameMs = report.stats.frameMs;
  const out = [];
  for (let i = 1; i < report.timeline.length; i++) {
    const [a, b] = [report.timeline[i - 1], report.timeline[i]];
    const seconds = b.atS - a.atS;
    const expected = (seconds * 1000) / frameMs;
    const received = b.framesReceived - a.framesReceived;
    const concealed = (b.samplesConcealed - a.samplesConcealed) / (seconds * report.rate);
    const concealedFrames = (b.samplesConcealed - a.samplesConcealed) / ((report.rate * frameMs) / 1000);
    const lost = b.framesLost - a.framesLost;
    const repaired = b.framesRepaired - a.framesRepaired;
    out.push({ endMs: b.unixMs, startMs: a.unixMs, received, expected, concealed, concealedFrames, lost, repaired, flowing: received >= MIN_RECEIVED * expected && concealed <= MAX_CONCEALED });
  }
  return out;
}

/** Seconds from `fromMs` to the start of the first run of FLOWING_RUN windows with audio, or null. */
function recoveryAfter(ws, fromMs) {
  for (let i = 0; i + FLOWING_RUN <= ws.length; i++) {
    if (ws[i].startMs < fromMs) continue;
    if (ws.slice(i, i + FLOWING_RUN).every((w) => w.flowing)) return Math.max(0, (ws[i].startMs - fromMs) / 1000);
  }
  return null;
}

/** What one side's report says about its audio around the outage. */
function summary(report, outageStart, outageEnd) {
  const ws = windows(report);
  const before = ws.filter((w) => w.endMs <= outageStart);
  const during = ws.filter((w) => w.startMs >= outageStart + 250 && w.endMs <= outageEnd);
  const s = report.stats;
  const callStart = report.timeline[0]?.unixMs ?? 0;
  const away = ws.filter((w) => w.startMs >= callStart + 1000 && (w.endMs <= outageStart || w.startMs >= outageEnd + AFTER_OUTAGE_MS));
  const sum = (key) => away.reduce((n, w) => n + w[key], 0);
  return {
    framesSent: s.framesSent,
    framesReceived: s.framesReceived,
    framesLost: s.framesLost,
    framesRepaired: s.framesRepaired,
    awayFromOutage: { seconds: away.length * WINDOW_S, lost: sum('lost'), repaired: sum('repaired'), concealedFrames: Math.round(sum('concealedFrames')) },
    framesConcealed: s.framesConcealed,
    framesDiscarded: s.framesDiscarded,
    framesDropped: s.framesDropped,
    underruns: s.underruns,
    decryptFailures: s.decryptFailures,
    rttMs: s.rttMs,
    mouthToEarMs: s.mouthToEarMs,
    flowingBefore: `${before.filter((w) => w.flowing).length}/${before.length}`,
    receivedDuring: during.reduce((n, w) => n + w.received, 0),
    recoveryS: recoveryAfter(ws, outageEnd),
    beforeWindows: before,
    duringWindows: during,
  };
}

for (const [profile, transport] of PROFILES.flatMap((p) => TRANSPORTS.map((t) => [p, t]))) {
  const name = transport === 'websocket' ? profile : `${profile} over ${transport}`;
  describe(`network profile ${name}`, () => {
    test(`a call across "${profile}" over ${transport} survives, carries audio, and recovers after a ${OUTAGE_MS} ms outage`, async () => {
      const set = await network.command(`profile ${profile}`);
      const [nearTone, farTone] = [tone(), tone()];
      const leaf = `leaf_${randomBytes(32).toString('base64url')}`;
      const params = [LINK_PARAMS, transport === 'websocket' && !LINK_PARAMS.includes('mobile=') ? WEBSOCKET_PARAMS[profile] : '']
        .filter(Boolean).join('&');
      const link = `http://${network.farAddr}:${PORT}/line.html?apikey=${server.apikey}${params ? `&${params}` : ''}#${leaf}`;
      const startStats = await network.command('stats');
      const near = tonePeer(network.near, link, {
        tones: [nearTone], heard: [farTone], secs: CALL_SECONDS, untilHangUp: false, transport,
        json: path.join(OUT, `network-${profile}-${transport}-near.json`),
      });
      const far = tonePeer(network.far, link, {
        tones: [farTone], heard: [nearTone], secs: CALL_SECONDS + 10, untilHangUp: true, transport,
        json: path.join(OUT, `network-${profile}-${transport}-far.json`),
      });
      // Both are awaited whatever happens, so that a failure of one is reported with the other's.
      const settled = Promise.allSettled([near, far]);
      await sleep(OUTAGE_AFTER_MS);
      const outageStart = Date.now();
      await network.command(`outage ${OUTAGE_MS}`);
      const outageEnd = outageStart + OUTAGE_MS;
      const [nearResult, farResult] = await settled;
      const endStats = await network.command('stats');
      if (nearResult.status === 'rejected') throw nearResult.reason;
      if (farResult.status === 'rejected') throw farResult.reason;
      const [nearReport, farReport] = [nearResult.value, farResult.value];
      const link_ = {};
      for (const d of ['up', 'down']) {
        link_[d] = Object.fromEntries(Object.keys(endStats[d]).map((k) => [k, endStats[d][k] - startStats[d][k]]));
      }
      const nearHears = summary(nearReport, outageStart, outageEnd);
      const farHears = summary(farReport, outageStart, outageEnd);
      const brief = ({ beforeWindows, duringWindows, ...rest }) => rest;
      results.profiles[name] = { profile: set.is, transport, rate: nearReport.rate, frameMs: nearReport.stats.frameMs, link: link_, nearHears: brief(nearHears), farHears: brief(farHears) };
      console.log(`network ${name}: ${JSON.stringify(results.profiles[name])}`);

      assert.ok(farReport.peerHungUp, `${name}: the far peer's call ended before the near one hung up`);
      for (const [who, r, s] of [['near', nearReport, nearHears], ['far', farReport, farHears]]) {
        assert.equal(r.stats.decryptFailures, 0, `${name}: the ${who} peer failed to decrypt frames`);
        assert.ok(r.timeline.length > 0 && r.timeline[0].unixMs < outageStart - 2000,
          `${name}: the ${who} peer's call had not begun 2 s before the outage`);
        const before = s.beforeWindows;
        assert.ok(before.filter((w) => w.flowing).length > before.length / 2,
          `${name}: the ${who} peer heard audio in only ${s.flowingBefore} windows before the outage: ${JSON.stringify(before)}`);
        assert.ok(s.duringWindows.length >= 4 && s.duringWindows.every((w) => !w.flowing),
          `${name}: the ${who} peer went on hearing audio through the outage: ${JSON.stringify(s.duringWindows)}`);
        assert.ok(s.recoveryS !== null && s.recoveryS <= MAX_RECOVERY_S,
          `${name}: the ${who} peer's audio did not flow again within ${MAX_RECOVERY_S} s of the outage (${s.recoveryS} s)`);
      }
      assert.ok(link_.up.outage_dropped > 0 && link_.down.outage_dropped > 0, `${name}: the outage dropped nothing`);
      if (transport === 'webtransport' && set.is.loss >= REPAIR_LOSS) {
        // The near peer hears what crossed the link down, the far one what crossed it up.
        for (const [who, s, linkLost] of [['near', nearHears, link_.down.lost], ['far', farHears, link_.up.lost]]) {
          assert.ok(s.framesRepaired >= MIN_REBUILT_SHARE * linkLost && s.framesRepaired > 0,
            `${name}: the ${who} peer rebuilt ${s.framesRepaired} frames of the ${linkLost} packets the link lost towards it`);
          const a = s.awayFromOutage;
          const missing = a.lost + a.repaired;
          assert.ok(a.concealedFrames <= MAX_CONCEALED_SHARE * missing,
            `${name}: away from the outage the ${who} peer concealed ${a.concealedFrames} frames of ${missing} missing (${a.repaired} rebuilt)`);
        }
      }
    });
  });
}
