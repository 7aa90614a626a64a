// Test tones for the fake microphones: 16-bit mono PCM WAV files made here, so the suite needs no sox.
import { writeFileSync } from 'node:fs';

/** Writes `seconds` of a sine at `freq` Hz and `amplitude` (0..1) to `path` at `rate` Hz. */
export function writeTone(path, { freq, amplitude = 0.5, seconds = 30, rate = 48000 }) {
  writeTones(path, { freqs: [freq], amplitude, seconds, rate });
}

/** Writes `seconds` of the sum of sines at `freqs` Hz, each at `amplitude`, to `path`. */
export function writeTones(path, { freqs, amplitude = 0.5, seconds = 30, rate = 48000 }) {
  const n = Math.round(seconds * rate);
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
  for (let i = 0; i < n; i++) {
    const v = Math.round(amplitude * 32767 * freqs.reduce((sum, f) => sum + Math.sin((2 * Math.PI * f * i) / rate), 0));
    buf.writeInt16LE(v, 44 + 2 * i);
  }
  writeFileSync(path, buf);
}
