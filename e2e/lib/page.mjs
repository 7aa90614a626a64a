// What the suite reads from line.html, through what the page exposes: `document.body.dataset`
// (state, error, notice), `window.line` (the LineClient: stats, audioContext, remoteNode).

/** Waits until the page's state is `state` (or one of several). */
export async function waitState(person, state, timeout = 15_000) {
  const wanted = Array.isArray(state) ? state : [state];
  await explained(person, `state ${wanted.join(' or ')}`, timeout,
    person.page.waitForFunction((w) => w.includes(document.body.dataset.state), wanted, { timeout }));
}

/** Waits until the page shows the error (fatal) or notice with `code`. */
export async function waitError(person, code, timeout = 15_000) {
  await explained(person, `error ${code}`, timeout, person.page.waitForFunction(
    (c) => document.body.dataset.error === c || document.body.dataset.notice === c, code, { timeout }));
  return person.page.evaluate(() => ({
    error: document.body.dataset.error ?? null,
    notice: document.body.dataset.notice ?? null,
    message: document.getElementById('error-message').textContent || document.getElementById('notice-message').textContent,
  }));
}

/**
 * A wait that timed out says what the page showed instead, so that a failure on a machine
 * nobody watched can be read from its log alone.
 */
async function explained(person, wanted, timeout, waiting) {
  try {
    await waiting;
  } catch (e) {
    const shown = await Promise.race([
      pageSays(person).then((s) => JSON.stringify(s)),
      new Promise((r) => setTimeout(() => r('(the page did not answer within 2 s)'), 2000)),
    ]).catch((err) => `(the page could not be read: ${err.message})`);
    throw new Error(`${person.name} did not reach ${wanted} within ${timeout} ms; the page shows ${shown}`, { cause: e });
  }
}

/** What the page shows: its dataset, the messages on it, and the client's and audio's state. */
export function pageSays(person) {
  return person.page.evaluate(() => {
    const ctx = window.line?.audioContext;
    return {
      dataset: { ...document.body.dataset },
      status: document.getElementById('status')?.textContent ?? null,
      error: document.getElementById('error-message')?.textContent || null,
      notice: document.getElementById('notice-message')?.textContent || null,
      client: window.line?.state ?? null,
      audioContext: ctx ? { state: ctx.state, sampleRate: ctx.sampleRate } : null,
      visibility: document.visibilityState,
    };
  });
}

export const stats = (person) => person.page.evaluate(() => window.line.stats());

/**
 * The other person's audio as this page plays it: the remote node tapped with an AnalyserNode,
 * Goertzel amplitude around each frequency (the strongest within ±1.5 %, since the jitter buffer
 * trims the speed by up to a few hundred ppm), the best of `rounds` windows of 32768 samples a
 * quarter of a second apart: two seconds, so that the dropouts of a loaded machine (two browsers
 * at 2.5 ms frames on two cores) still leave one whole window, while a tone not played at all, or
 * played off pitch, is in none.
 * The page only copies the samples out; the search runs here, so that the page's main thread
 * stays free (a Firefox worker's WebSocket sends nothing while it is busy).
 */
export async function hear(person, freqs, rounds = 8) {
  const { rate, windows } = await person.page.evaluate(async (rounds) => {
    const ctx = window.line.audioContext;
    const an = ctx.createAnalyser();
    an.fftSize = 32768;
    window.line.remoteNode.connect(an);
    const windows = [];
    for (let k = 0; k < rounds; k++) {
      await new Promise((r) => setTimeout(r, 250));
      const buf = new Float32Array(an.fftSize);
      an.getFloatTimeDomainData(buf);
      let s = '';
      const bytes = new Uint8Array(buf.buffer);
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      windows.push(btoa(s));
    }
    an.disconnect();
    return { rate: ctx.sampleRate, windows };
  }, rounds);
  const best = Object.fromEntries(freqs.map((f) => [f, 0]));
  for (const b64 of windows) {
    const bytes = Buffer.from(b64, 'base64');
    const buf = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    // Candidates a quarter of a bin apart, so that a tone between them loses at most ~1 %.
    const step = rate / buf.length / 4;
    for (const f of freqs) {
      for (let g = f * 0.985; g <= f * 1.015; g += step) best[f] = Math.max(best[f], goertzel(buf, g, rate));
    }
  }
  return best;
}

/** Amplitude of the sine of `f` Hz in `buf` (Goertzel's recurrence). */
function goertzel(buf, f, rate) {
  const c = 2 * Math.cos((2 * Math.PI * f) / rate);
  let s1 = 0, s2 = 0;
  for (let i = 0; i < buf.length; i++) {
    const s0 = buf[i] + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (2 * Math.sqrt(Math.max(0, s1 * s1 + s2 * s2 - c * s1 * s2))) / buf.length;
}

/** Samples `mouthToEarMs` every 100 ms for `ms`; returns the values seen (0 = no frame yet). */
export async function sampleLatency(person, ms) {
  return person.page.evaluate(async (ms) => {
    const seen = [];
    const end = performance.now() + ms;
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      const s = window.line.stats();
      if (s && s.mouthToEarMs > 0) seen.push(s.mouthToEarMs);
    }
    return seen;
  }, ms);
}

export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The link with extra query parameters inserted before the fragment. */
export function withParams(link, params) {
  const [base, fragment] = link.split('#');
  return `${base}&${params}${fragment === undefined ? '' : `#${fragment}`}`;
}
