// What the suite reads from line.html, through what the page exposes: `document.body.dataset`
// (state, error, notice), `window.line` (the LineClient: stats, audioContext, remoteNode).

/** Waits until the page's state is `state` (or one of several). */
export async function waitState(person, state, timeout = 15_000) {
  const wanted = Array.isArray(state) ? state : [state];
  await person.page.waitForFunction((w) => w.includes(document.body.dataset.state), wanted, { timeout });
}

/** Waits until the page shows the error (fatal) or notice with `code`. */
export async function waitError(person, code, timeout = 15_000) {
  await person.page.waitForFunction(
    (c) => document.body.dataset.error === c || document.body.dataset.notice === c, code, { timeout });
  return person.page.evaluate(() => ({
    error: document.body.dataset.error ?? null,
    notice: document.body.dataset.notice ?? null,
    message: document.getElementById('error-message').textContent || document.getElementById('notice-message').textContent,
  }));
}

export const stats = (person) => person.page.evaluate(() => window.line.stats());

/**
 * The other person's audio as this page plays it: the remote node tapped with an AnalyserNode,
 * Goertzel amplitude around each frequency (the strongest within ±1.5 %, since the jitter buffer
 * trims the speed by up to a few hundred ppm), the best of `rounds` windows of ~0.16 s.
 */
export async function hear(person, freqs, rounds = 4) {
  return person.page.evaluate(async ({ freqs, rounds }) => {
    const ctx = window.line.audioContext;
    const an = ctx.createAnalyser();
    an.fftSize = 32768;
    window.line.remoteNode.connect(an);
    const goertzel = (buf, f) => {
      const w = (2 * Math.PI * f) / ctx.sampleRate;
      let re = 0, im = 0;
      for (let i = 0; i < buf.length; i++) { re += buf[i] * Math.cos(w * i); im += buf[i] * Math.sin(w * i); }
      return (2 * Math.hypot(re, im)) / buf.length;
    };
    const best = Object.fromEntries(freqs.map((f) => [f, 0]));
    for (let k = 0; k < rounds; k++) {
      await new Promise((r) => setTimeout(r, 250));
      const buf = new Float32Array(an.fftSize);
      an.getFloatTimeDomainData(buf);
      for (const f of freqs) {
        for (let g = f * 0.985; g <= f * 1.015; g += f / 2000) best[f] = Math.max(best[f], goertzel(buf, g));
      }
    }
    an.disconnect();
    return best;
  }, { freqs, rounds });
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
