// Impaired networks, measured: for each profile, rate and transport, headless Chromium on the
// impaired side of line-netem calls line's native tone peer beside the server, for SECONDS, both
// over a WebSocket or both over WebTransport datagrams (each side's frames as it sends them there:
// 10 ms on a WebSocket, the longest that fit a datagram on WebTransport, 2.5 ms at 200 kHz).
// Reported per direction, never judged: mouth-to-ear p50/p95 (each engine's estimate, sampled
// every 250 ms once the call settled), concealed frames and concealed milliseconds a minute (the
// transports' frames differ in length), underruns, frames lost and frames rebuilt. Written to
// target/bench/network.json for scripts/bench-summary.mjs. Needs root, `just build`, and
// `cargo build --release -p line-netem -p line-loadgen`.
//
// The browser's microphone plays a tone over a microphone's noise floor (white noise over the
// whole 48 kHz band, LINE_NETWORK_MIC_NOISE rms, default 0.01: -40 dBFS; the page in studio mode,
// so no noise suppression takes it out), the hard case for the lossless coding, since noise does
// not predict; the tone peer sends pure tones. Each call
// codes its audio as the page does by default (lossless); LINE_NETWORK_CODINGS=lossless,pcm adds
// the same call with `&coding=pcm` beside it (raw PCM both ways).
//
//   node e2e/network-bench.mjs                 every profile, 200 and 48 kHz, both transports, 60 s each
//   LINE_NETWORK_PROFILES=wifi LINE_NETWORK_RATES=200k LINE_NETWORK_TRANSPORTS=webtransport \
//     LINE_NETWORK_CODINGS=lossless,pcm LINE_NETWORK_BENCH_SECONDS=30 node e2e/network-bench.mjs
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchPerson } from './lib/browser.mjs';
import { chromiumIn, startNetwork } from './lib/netem.mjs';
import { percentile, stats, waitState } from './lib/page.mjs';
import { seededRandom } from './lib/seed.mjs';
import { repoRoot, startServer } from './lib/server.mjs';
import { runTonePeer } from './lib/tonepeer.mjs';
import { writeTone } from './lib/wav.mjs';

const OUT = path.join(repoRoot, 'target/bench');
const PROFILES = (process.env.LINE_NETWORK_PROFILES ?? 'lan,home,wifi,mobile').split(',');
const SECONDS = Number(process.env.LINE_NETWORK_BENCH_SECONDS ?? 60);
// The first seconds of a call are its jitter buffer learning the network: a call lasts minutes.
const SETTLE_S = 5;
const SAMPLE_MS = 250;
const RATES = [
  { label: '200k', params: '' },
  { label: '48k', params: 'mobile=1' },
].filter((r) => (process.env.LINE_NETWORK_RATES ?? '200k,48k').split(',').includes(r.label));
const TRANSPORTS = (process.env.LINE_NETWORK_TRANSPORTS ?? 'websocket,webtransport').split(',');
const CODINGS = (process.env.LINE_NETWORK_CODINGS ?? 'lossless').split(',');
const MIC_NOISE_RMS = Number(process.env.LINE_NETWORK_MIC_NOISE ?? 0.01);
const PORT = 7777;

mkdirSync(OUT, { recursive: true });
const random = seededRandom('network-bench');
const tone = () => Math.round((1000 + 19000 * random()) * 10) / 10;

/** The native tone peer inside the far namespace, in the call until the browser hangs up. */
function tonePeer(network, link, { tones, heard, transport, json }) {
  return runTonePeer(link, {
    tones,
    heard,
    args: ['--secs', String(SECONDS + 60), '--until-hang-up', '--timeline-secs', String(SAMPLE_MS / 1000), '--transport', transport, '--json', json],
    wrap: (argv) => network.inNamespace(network.far, argv),
  });
}

/**
 * p50/p95 of the settled samples, concealed frames (of `frameMs` each, the other side's) and
 * milliseconds a minute, and the counters over the call.
 */
function figures(points, seconds, frameMs) {
  const settled = points.filter((p) => p.atS >= SETTLE_S && p.mouthToEarMs > 0).map((p) => p.mouthToEarMs);
  const [first, last] = [points.find((p) => p.atS >= SETTLE_S) ?? points[0], points.at(-1)];
  const minutes = (last.atS - first.atS) / 60;
  const round = (x) => Math.round(x * 10) / 10;
  return {
    mouthToEarP50Ms: round(percentile(settled, 50)),
    mouthToEarP95Ms: round(percentile(settled, 95)),
    concealedFramesPerMinute: round((last.framesConcealed - first.framesConcealed) / minutes),
    concealedMsPerMinute: round(((last.framesConcealed - first.framesConcealed) * frameMs) / minutes),
    underruns: last.underruns - first.underruns,
    // Frames lost on the way and rebuilt from repair frames (WebTransport), a minute.
    repairedFramesPerMinute: round((last.framesRepaired - first.framesRepaired) / minutes),
    framesReceived: last.framesReceived,
    seconds,
  };
}

/** The mean of a bitrate field over the settled samples, Mbit/s to two decimals. */
function mbps(points, field) {
  const xs = points.filter((p) => p.atS >= SETTLE_S).map((p) => p[field]);
  return xs.length ? Math.round(xs.reduce((a, b) => a + b, 0) / xs.length / 1e4) / 100 : 0;
}

async function benchOne(network, server, profile, rate, transport, coding) {
  await network.command(`profile ${profile}`);
  const [browserTone, peerTone] = [tone(), tone()];
  const wav = path.join(OUT, `network-mic-${browserTone}.wav`);
  writeTone(wav, { freq: browserTone, amplitude: 0.4, seconds: SECONDS + 30, noise: { rms: MIC_NOISE_RMS, random } });
  const origin = `http://${network.farAddr}:${PORT}`;
  const leaf = `leaf_${(await import('node:crypto')).randomBytes(32).toString('base64url')}`;
  // The page prefers WebTransport; `transport=websocket` keeps it on the WebSocket.
  // `studio=1`: the microphone's noise floor reaches the coder, as from a studio microphone,
  // instead of what noise suppression leaves of it.
  const params = ['studio=1', rate.params, transport === 'websocket' ? 'transport=websocket' : '', coding === 'pcm' ? 'coding=pcm' : '']
    .filter(Boolean).join('&');
  const link = `${origin}/line.html?apikey=${server.apikey}${params ? `&${params}` : ''}#${leaf}`;
  const peer = tonePeer(network, link, {
    tones: [peerTone], heard: [browserTone], transport, json: path.join(OUT, `network-${profile}-${rate.label}-${transport}-${coding}-peer.json`),
  });
  const person = await launchPerson('browser', {
    wav,
    executablePath: chromiumIn(network.near, OUT),
    // A page from a plain-HTTP address is not a secure context: no microphone, no worklet.
    args: [`--unsafely-treat-insecure-origin-as-secure=${origin}`],
  });
  const points = [];
  try {
    await person.page.goto(link);
    await waitState(person, 'ready');
    await person.page.click('#join');
    await waitState(person, 'in-call', 30_000);
    const start = Date.now();
    while (Date.now() - start < SECONDS * 1000) {
      await sleep(SAMPLE_MS);
      const s = await stats(person);
      if (s) points.push({ ...s, atS: (Date.now() - start) / 1000 });
    }
    await person.page.click('#hangup');
  } catch (e) {
    console.error(person.console.slice(-20).join('\n'));
    throw e;
  } finally {
    await person.close();
  }
  const report = await peer;
  const used = points.at(-1)?.transport;
  if (used !== transport) throw new Error(`${profile} ${rate.label}: the page called over ${used}, not ${transport}`);
  // Both sides send the same frames on one transport at one rate.
  const frameMs = report.stats.frameMs;
  return {
    profile,
    rate: rate.label,
    transport,
    coding,
    // The browser's coded/PCM bytes (0 when it sent PCM), and what its engine sent and received
    // (frame bytes, before the transport's own), Mbit/s over the settled samples.
    browserLosslessRatio: Math.round((points.at(-1)?.losslessRatio ?? 0) * 1000) / 1000,
    browserSendMbps: mbps(points, 'sendBitrate'),
    browserReceiveMbps: mbps(points, 'receiveBitrate'),
    frameMs,
    tones: { browser: browserTone, peer: peerTone },
    browserHears: figures(points, SECONDS, frameMs),
    peerHears: figures(report.timeline, SECONDS, frameMs),
  };
}

const linkSeed = Math.floor(random() * 2 ** 32);
const network = await startNetwork({ profile: 'lan', seed: linkSeed });
const server = await startServer({ netns: network.far, bind: network.farAddr, port: PORT, webtransport: true });
const results = { seed: random.seed, linkSeed, seconds: SECONDS, settleSeconds: SETTLE_S, micNoiseRms: MIC_NOISE_RMS, calls: [] };
try {
  for (const profile of PROFILES) {
    for (const rate of RATES) {
      for (const transport of TRANSPORTS) {
        for (const coding of CODINGS) {
          const r = await benchOne(network, server, profile, rate, transport, coding);
          results.calls.push(r);
          console.log(`network ${profile} ${rate.label} ${transport} ${coding}: browser hears ${JSON.stringify(r.browserHears)}; peer hears ${JSON.stringify(r.peerHears)}; browser sends ${r.browserSendMbps} Mbit/s (coded/PCM ${r.browserLosslessRatio}), receives ${r.browserReceiveMbps}`);
          writeFileSync(path.join(OUT, 'network.json'), JSON.stringify(results, null, 2));
        }
      }
    }
  }
} finally {
  await server.stop();
  await network.stop();
}
console.log(`network bench: target/bench/network.json (seed ${random.seed})`);
