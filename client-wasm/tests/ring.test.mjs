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
