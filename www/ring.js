// The sample ring between the audio thread and the engine's worker, as the worklet sees it. Layout
// (docs/CLIENT.md, client-wasm/src/ring.rs): Int32 [read, write, xruns, wake-after], then Float32
// samples; one slot stays empty; indices published with Atomics after the data. Both this file and
// ring.rs are tested against one table of cases, client-wasm/tests/ring_cases.json.
export class Ring {
  constructor(buffer) {
    this.idx = new Int32Array(buffer, 0, 4);
    this.data = new Float32Array(buffer, 16);
    this.cap = this.data.length;
  }
  // Plain loops, not subarray() + set(): the audio thread runs these up to 1560 times a second
  // (200 kHz), and each subarray() is an allocation, so garbage and collector pauses, on the one
  // thread that must never stall. 128 samples copy in well under a microsecond.
  // Writes what fits of `src`, counts the rest as xruns, and returns how many it wrote.
  push(src) {
    const cap = this.cap, data = this.data, r = Atomics.load(this.idx, 0);
    let w = Atomics.load(this.idx, 1);
    const n = Math.min(src.length, cap - 1 - (w + cap - r) % cap);
    for (let i = 0; i < n; i++) {
      data[w] = src[i];
      if (++w === cap) w = 0;
    }
    Atomics.store(this.idx, 1, w);
    if (n < src.length) Atomics.add(this.idx, 2, src.length - n);
    return n;
  }
  // Samples (or record words) ready to read.
  available() {
    return (Atomics.load(this.idx, 1) + this.cap - Atomics.load(this.idx, 0)) % this.cap;
  }
  // Free slots.
  free() {
    return this.cap - 1 - this.available();
  }
  // The next word, not taken (a frame record's length, for playout in the worklet).
  peek() {
    return this.data[Atomics.load(this.idx, 0)];
  }
  // Moves exactly `n` words (the caller checked `available()`) into `dst`, no xruns counted.
  read(dst, n) {
    const cap = this.cap, data = this.data;
    let r = Atomics.load(this.idx, 0);
    for (let i = 0; i < n; i++) {
      dst[i] = data[r];
      if (++r === cap) r = 0;
    }
    Atomics.store(this.idx, 0, r);
  }
  // Fills `dst` with what there is, zeros and xruns for the rest; returns how many it read.
  pop(dst) {
    const cap = this.cap, data = this.data, w = Atomics.load(this.idx, 1);
    let r = Atomics.load(this.idx, 0);
    const n = Math.min(dst.length, (w + cap - r) % cap);
    for (let i = 0; i < n; i++) {
      dst[i] = data[r];
      if (++r === cap) r = 0;
    }
    Atomics.store(this.idx, 0, r);
    if (n < dst.length) { dst.fill(0, n); Atomics.add(this.idx, 2, dst.length - n); }
    return n;
  }
}
