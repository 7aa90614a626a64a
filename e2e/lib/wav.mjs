// Test tones and click trains for the fake microphones: 16-bit mono PCM WAV files made here, so the
// suite needs no sox.
import { writeFileSync } from 'node:fs';

/** Writes `seconds` of a sine at `freq` Hz and `amplitude` (0..1) to `path` at `rate` Hz. */
export function writeTone(path, { freq, amplitude = 0.5, seconds = 30, rate = 48000, noise }) {
  writeTones(path, { freqs: [freq], amplitude, seconds, rate, noise });
}

/**
 * Writes `seconds` of the sum of sines at `freqs` Hz, each at `amplitude`, to `path`; with
 * `noise` ({ rms, random }), white noise of that rms added over the whole band, as a microphone's
 * floor (`random`: a seeded generator).
 */
export function writeTones(path, { freqs, amplitude = 0.5, seconds = 30, rate = 48000, noise }) {
  const samples = new Float32Array(Math.round(seconds * rate));
  // Uniform noise of rms r spans ±r·√3.
  const spread = noise ? noise.rms * Math.sqrt(3) : 0;
  for (let i = 0; i < samples.length; i++) {
    const floor = noise ? spread * (2 * noise.random() - 1) : 0;
    samples[i] = amplitude * freqs.reduce((sum, f) => sum + Math.sin((2 * Math.PI * f * i) / rate), 0) + floor;
  }
  writeSamples(path, samples, rate);
}

/**
 * Writes a click train to `path`: a pulse of `amplitude` for `pulseMs` after each gap of
 * `gapsMs` (one click per gap, the first at the first gap), silence between. Returns how long the
 * file is, seconds (the fake microphone loops it).
 */
export function writeClicks(path, { gapsMs, amplitude = 0.8, pulseMs = 0.5, rate = 48000 }) {
  const starts = [];
  let at = 0;
  for (const gap of gapsMs) starts.push(Math.round(((at += gap) * rate) / 1000));
  const n = starts.at(-1) + Math.round((gapsMs[0] * rate) / 1000);
  const samples = new Float32Array(n);
  const pulse = Math.max(1, Math.round((pulseMs * rate) / 1000));
  for (const s of starts) samples.fill(amplitude, s, s + pulse);
  writeSamples(path, samples, rate);
  return n / rate;
}

/** Writes `samples` (-1..1) as a 16-bit mono PCM WAV file at `rate` Hz. */
function writeSamples(path, samples, rate) {
  const n = samples.length;
  const buf = Buffer.alloc(44 + 2 * n);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(36 + 2 * n, 4);
  buf.write('WAVE', 8);
  buf.write('fmt ', 12);
  buf.writeUInt32LE(16, 16); // fmt chunk size
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(2 * rate, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36);
  buf.writeUInt32LE(2 * n, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(32767 * Math.max(-1, Math.min(1, samples[i]))), 44 + 2 * i);
  writeFileSync(path, buf);
}

/**
 * Two people's microphones for a call test: tones drawn from `random` an octave and more apart
 * (A 300-1500 Hz, B 3-12 kHz), each written to a WAV in `dir` at `amplitude`.
 */
export function twoPeopleTones(random, dir, amplitude) {
  const toneA = Math.round(300 + 1200 * random());
  const toneB = Math.round(3000 + 9000 * random());
  const [wavA, wavB] = [toneA, toneB].map((freq) => {
    const file = `${dir}/tone-${freq}.wav`;
    writeTone(file, { freq, amplitude });
    return file;
  });
  return { toneA, toneB, wavA, wavB };
}
