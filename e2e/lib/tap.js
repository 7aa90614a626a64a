// The e2e suite's recorder (see record.mjs): an AudioWorklet that copies its input into the
// blocks it was given (start and length in context frames) and posts each one when it is full.
class Tap extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.blocks = options.processorOptions.blocks.map(([start, length]) => ({ start, data: new Float32Array(length), filled: 0 }));
  }
  process(inputs) {
    const ch = inputs[0][0];
    if (!ch) return true;
    const frame = currentFrame;
    for (const b of this.blocks) {
      if (b.filled === b.data.length || frame + ch.length <= b.start) continue;
      if (b.filled === 0) this.port.postMessage({ started: b.start });
      for (let i = Math.max(0, b.start - frame); i < ch.length && b.filled < b.data.length; i++) b.data[b.filled++] = ch[i];
      if (b.filled === b.data.length) this.port.postMessage({ start: b.start, data: b.data }, [b.data.buffer]);
    }
    return this.blocks.some((b) => b.filled < b.data.length);
  }
}
registerProcessor('line-tap', Tap);
