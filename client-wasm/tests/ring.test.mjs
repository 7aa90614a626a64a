// The worklet's ring (www/ring.js) against the cases ring.rs is tested with, under node:test:
// `node --test client-wasm/tests/ring.test.mjs` (part of `just test`).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const here = new URL('.', import.meta.url);
const cases = JSON.parse(readFileSync(new URL('ring_cases.json', here), 'utf8'));
// www/ has no package.json (it is served as it is), so Node would read ring.js as CommonJS;
// imported from a data: URL it is the ES module the worklet imports.
const source = readFileSync(new URL('../../www/ring.js', here), 'utf8');
const { Ring } = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);

for (const c of cases) {
  test(c.name, () => {
    // Shared memory, as in the page; the algorithm is the same over a plain ArrayBuffer.
    const ring = new Ring(new SharedArrayBuffer(16 + 4 * c.capacity));
    let nextIn = 0;
    let nextOut = 0;
    for (const op of c.ops) {
      if ('push' in op) {
        const src = Float32Array.from({ length: op.push }, (_, i) => nextIn + i);
        assert.equal(ring.push(src), op.wrote, JSON.stringify(op));
        nextIn += op.wrote;
      } else {
        const dst = new Float32Array(op.pop).fill(-1);
        assert.equal(ring.pop(dst), op.read, JSON.stringify(op));
        const expected = Float32Array.from({ length: op.pop }, (_, i) => (i < op.read ? nextOut + i : 0));
        assert.deepEqual(dst, expected, 'samples in order, then silence for what was missing');
        nextOut += op.read;
      }
    }
    assert.deepEqual([ring.idx[0], ring.idx[1]], c.indices, 'read and write index');
    assert.equal(ring.idx[2], c.xruns, 'samples the audio thread could not move');
    assert.equal(ring.idx[3], 0, 'the reserved slot');
  });
}

// Frame records (docs/CLIENT.md, "Playout on the audio thread"): the worker writes whole records
// (their first word is their length) and the playback worklet takes them whole, across the end.
test('records are read back whole, in order, across the end of the ring', () => {
  const seed = Date.now();
  console.log(`seed ${seed}`);
  let x = seed % 2147483647 || 1;
  const next = (n) => { x = (x * 48271) % 2147483647; return x % n; };
  const ring = new Ring(new SharedArrayBuffer(16 + 4 * 101));
  const scratch = new Float32Array(100);
  let written = 0;
  let read = 0;
  for (let round = 0; round < 500; round++) {
    const len = 9 + next(40);
    if (ring.free() >= len) {
      const record = Float32Array.from({ length: len }, (_, i) => (i === 0 ? len : written * 1000 + i));
      assert.equal(ring.push(record), len);
      written++;
    }
    if (next(2) === 0) {
      while (ring.available() > 0) {
        const n = ring.peek();
        assert.ok(n <= ring.available(), 'a record is there whole');
        ring.read(scratch, n);
        for (let i = 1; i < n; i++) assert.equal(scratch[i], read * 1000 + i);
        read++;
      }
    }
  }
  assert.ok(read > 100, `${read} records read`);
  assert.equal(ring.idx[2], 0, 'no xruns are counted for records');
});
