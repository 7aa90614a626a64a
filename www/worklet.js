// line's AudioWorklet shim: it moves samples between the audio thread and the engine's worker, and
// by default runs the playout (the jitter buffer, in line-playout's wasm module) per render quantum.
import { Ring } from './ring.js';

// Without cross-origin isolation there is no shared memory: the worker sends a MessagePort instead,
// capture goes out in batches of about 2.5 ms, playback arrives in chunks into a private ring.
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const shared = options.processorOptions.ring;
    this.ring = shared ? new Ring(shared) : null;
    this.batch = new Float32Array(Math.max(128, Math.round(sampleRate / 400 / 128) * 128));
    this.fill = 0;
    // The engine's worker sleeps in Atomics.waitAsync on the write index, and this wakes it on
    // the audio clock instead of its own timer, which browsers clamp, throttle and deliver late:
    // once the samples its next frame needs are here (it says how many in the ring's slot 3), or,
    // where it also feeds the playback ring (slot 3 is 0), about every 2.7-4.5 ms of audio (every
    // quantum at 48 kHz, every seventh at 200 kHz, which renders in 10 ms bursts anyway).
    this.every = Math.max(1, Math.floor(sampleRate / 128 / 200));
    this.quanta = 0;
    this.port.onmessage = (e) => { this.out = e.data.port; };
  }
  process(inputs) {
    const ch = inputs[0][0];
    if (!ch) return true;
    if (this.ring) {
      this.ring.push(ch);
      // The worker says in slot 3 how many samples its next frame needs (0: wake it anyway).
      const want = Atomics.load(this.ring.idx, 3);
      if (want > 0 ? this.ring.available() >= want : ++this.quanta % this.every === 0) {
        Atomics.notify(this.ring.idx, 1);
      }
      return true;
    }
    if (!this.out) return true;
    this.batch.set(ch, this.fill);
    this.fill += ch.length;
    if (this.fill + 128 > this.batch.length) {
      this.out.postMessage(this.batch.slice(0, this.fill));
      this.fill = 0;
    }
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const po = options.processorOptions;
    const shared = po.ring;
    this.ring = new Ring(shared || new ArrayBuffer(16 + 4 * po.capacity));
    this.consumed = 0;
    this.blocks = 0;
    // Playout here (docs/CLIENT.md, "Playout on the audio thread"): the ring carries frame
    // records, and the jitter buffer runs in line-playout's module.
    if (po.playout) this.startPlayout(po.playout, po.stats);
    this.port.onmessage = (e) => {
      this.in = e.data.port;
      // A record goes whole or not at all: half a record would be garbage to the reader. One
      // with no room is counted in the statistics (the playout conceals it).
      this.in.onmessage = this.wasm
        ? (m) => {
          if (this.ring.free() >= m.data.length) this.ring.push(m.data);
          else this.wasm.playout_dropped();
        }
        : (m) => this.ring.push(m.data);
    };
  }
  startPlayout(bytes, stats) {
    // Compiled here, synchronously: the module is small, and the scope has no fetch.
    this.wasm = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports;
    this.wasm.playout_init(sampleRate);
    if (stats) {
      this.seq = new Int32Array(stats, 0, 1);
      this.shared = new Float64Array(stats, 8);
    }
    this.views();
  }
  // Typed arrays over the module's memory, made again whenever it grew (a new stream's buffer).
  views() {
    const w = this.wasm;
    this.memory = w.memory.buffer;
    this.record = new Float32Array(this.memory, w.playout_record(), w.playout_record_words());
    this.stats = new Float64Array(this.memory, w.playout_stats(), w.playout_stats_len());
    this.rendered = new Float32Array(this.memory, w.playout_out(), 4096);
  }
  // Per quantum, allocation-free but for the port mode's report every 8 quanta.
  playout(out) {
    const w = this.wasm, ring = this.ring, frame = currentFrame;
    let avail = ring.available();
    while (avail > 0) {
      const len = ring.peek();
      if (!(len > 8 && len <= avail && len <= this.record.length)) {
        // Not a record: drop what is there rather than play garbage, and count it.
        ring.read(this.record, Math.min(avail, this.record.length));
        w.playout_push(0, frame);
        break;
      }
      ring.read(this.record, len);
      w.playout_push(len, frame);
      if (w.memory.buffer !== this.memory) this.views();
      avail -= len;
    }
    w.playout_render(frame, out.length);
    const src = this.rendered;
    for (let i = 0; i < out.length; i++) out[i] = src[i];
    // Statistics every 8 quanta (2.7-21 ms), in both modes: the worker reads them once a frame
    // at most, and its clock map keeps the earliest report, which this thins but does not bias.
    if (++this.blocks % 8 !== 0) return;
    w.playout_stats();
    const stats = this.stats;
    if (this.shared) {
      // Odd while writing: the worker takes only a read that saw the same even number around it.
      Atomics.add(this.seq, 0, 1);
      for (let i = 0; i < stats.length; i++) this.shared[i] = stats[i];
      Atomics.add(this.seq, 0, 1);
    } else if (this.in) {
      this.in.postMessage(stats.slice());
    }
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (this.wasm) {
      this.playout(out);
      for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
      return true;
    }
    this.consumed += this.ring.pop(out);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    // In port mode the worker learns how much was played, so it can keep the ring filled.
    if (this.in && ++this.blocks % 8 === 0) this.in.postMessage([this.consumed, Atomics.load(this.ring.idx, 2)]);
    return true;
  }
}

registerProcessor('line-capture', Capture);
registerProcessor('line-playback', Playback);
