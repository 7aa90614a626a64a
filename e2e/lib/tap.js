// The e2e suite's recorders: `line-tap` (see record.mjs) copies its input into the blocks it was
// given (start and length in context frames) and posts each one when it is full; `line-onsets`
// (see latency.mjs) posts the context frame of each click it hears.
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

// A click's onset: the first sample at or above `threshold` in magnitude after at least `quiet`
// frames below it, posted as its context frame (sample-exact).
class Onsets extends AudioWorkletProcessor {
  constructor(options) {
    super();
    ({ threshold: this.threshold, quiet: this.quiet } = options.processorOptions);
    this.below = this.quiet;
    this.stopped = false;
    this.port.onmessage = () => { this.stopped = true; };
  }
  process(inputs) {
    const ch = inputs[0][0];
    if (ch) {
      for (let i = 0; i < ch.length; i++) {
        if (Math.abs(ch[i]) < this.threshold) {
          this.below++;
          continue;
        }
        if (this.below >= this.quiet) this.port.postMessage(currentFrame + i);
        this.below = 0;
      }
    }
    return !this.stopped;
  }
}
registerProcessor('line-onsets', Onsets);
