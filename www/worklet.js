// line's AudioWorklet shim: it only moves samples between the audio thread and the engine's worker.
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
    // The engine's worker sleeps in Atomics.waitAsync on the write index: waking it about every
    // 2.7-4.5 ms of audio (every quantum at 48 kHz, every seventh at 200 kHz) makes it follow the
    // audio clock instead of its own timer, which browsers clamp, throttle and deliver late. At
    // 200 kHz the device renders in 10 ms bursts anyway: waking more often there only costs CPU
    // and gains no latency.
    this.every = Math.max(1, Math.floor(sampleRate / 128 / 200));
    this.quanta = 0;
    this.port.onmessage = (e) => { this.out = e.data.port; };
  }
  process(inputs) {
    const ch = inputs[0][0];
    if (!ch) return true;
    if (this.ring) {
      this.ring.push(ch);
      if (++this.quanta % this.every === 0) Atomics.notify(this.ring.idx, 1);
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
    const shared = options.processorOptions.ring;
    this.ring = new Ring(shared || new ArrayBuffer(16 + 4 * options.processorOptions.capacity));
    this.consumed = 0;
    this.blocks = 0;
    this.port.onmessage = (e) => {
      this.in = e.data.port;
      this.in.onmessage = (m) => this.ring.push(m.data);
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    this.consumed += this.ring.pop(out);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    // In port mode the worker learns how much was played, so it can keep the ring filled.
    if (this.in && ++this.blocks % 8 === 0) this.in.postMessage([this.consumed, Atomics.load(this.ring.idx, 2)]);
    return true;
  }
}

registerProcessor('line-capture', Capture);
registerProcessor('line-playback', Playback);
