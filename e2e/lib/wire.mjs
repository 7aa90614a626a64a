// Reads what a browser sent to the server the way the server reads it: the HTTP request head, then
// (after a WebSocket upgrade) each frame's payload, unmasked. Searching raw TCP bytes would prove
// nothing, since browsers mask every WebSocket frame with a random key.

/** Splits one connection's client->server bytes into HTTP heads and unmasked WebSocket payloads. */
export function parseClientStream(buf) {
  const heads = [];
  const payloads = [];
  let pos = 0;
  while (pos < buf.length) {
    const end = buf.indexOf('\r\n\r\n', pos);
    if (end < 0) break;
    const head = buf.subarray(pos, end + 4).toString('latin1');
    heads.push(head);
    pos = end + 4;
    if (/^upgrade:\s*websocket/im.test(head)) {
      parseFrames(buf.subarray(pos), payloads);
      break;
    }
  }
  return { heads, payloads };
}

function parseFrames(buf, payloads) {
  let pos = 0;
  while (pos + 2 <= buf.length) {
    const opcode = buf[pos] & 0x0f;
    const masked = (buf[pos + 1] & 0x80) !== 0;
    let len = buf[pos + 1] & 0x7f;
    let p = pos + 2;
    if (len === 126) {
      if (p + 2 > buf.length) return;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (p + 8 > buf.length) return;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    const key = masked ? buf.subarray(p, p + 4) : null;
    if (masked) p += 4;
    if (p + len > buf.length) return; // the connection ended mid-frame
    const payload = Buffer.from(buf.subarray(p, p + len));
    if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    payloads.push({ opcode, payload });
    pos = p + len;
  }
}

/** Every text form of a 32-byte key a careless client might send. */
export function keyEncodings(raw) {
  const b64 = raw.toString('base64');
  const b64url = raw.toString('base64url');
  return [raw, Buffer.from(b64), Buffer.from(b64url), Buffer.from(raw.toString('hex')),
    Buffer.from(raw.toString('hex').toUpperCase()), Buffer.from(encodeURIComponent(b64))];
}

/**
 * Finds a run of `run` consecutive 16-bit little-endian samples of a sine at `freq` Hz and `rate` Hz
 * with amplitude about `amplitude` (0..1), at any phase and byte alignment: a sine satisfies
 * x[n-1] + x[n+1] = 2 cos(w) x[n]. Random (encrypted) bytes pass that test with odds near 1e-20.
 */
export function findToneRun(buf, { freq, rate, amplitude, run = 16, tolerance = 24 }) {
  const c = 2 * Math.cos((2 * Math.PI * freq) / rate);
  const peak = amplitude * 32767;
  for (let align = 0; align < 2; align++) {
    const n = Math.floor((buf.length - align) / 2);
    let streak = 0;
    let maxAbs = 0;
    for (let i = 1; i + 1 < n; i++) {
      const a = buf.readInt16LE(align + 2 * (i - 1));
      const b = buf.readInt16LE(align + 2 * i);
      const d = buf.readInt16LE(align + 2 * (i + 1));
      const ok = Math.abs(a + d - c * b) <= tolerance && Math.abs(b) <= peak * 1.05 + 2;
      if (ok && (streak > 0 || b !== 0 || a !== 0)) {
        streak++;
        maxAbs = Math.max(maxAbs, Math.abs(b));
        if (streak >= run && maxAbs > peak * 0.2) return { offset: align + 2 * (i - run), streak };
      } else {
        streak = 0;
        maxAbs = 0;
      }
    }
  }
  return null;
}

/** The PCM bytes of `count` samples of a sine, to check `findToneRun` finds what it looks for. */
export function tonePcm({ freq, rate, amplitude, count, phase = 0.3 }) {
  const out = Buffer.alloc(2 * count);
  for (let i = 0; i < count; i++) {
    out.writeInt16LE(Math.round(amplitude * 32767 * Math.sin(phase + (2 * Math.PI * freq * i) / rate)), 2 * i);
  }
  return out;
}
