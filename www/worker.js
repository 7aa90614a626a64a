// The engine's dedicated worker: loads line's wasm module and hands control to Rust.
import init, { startWorker } from './pkg/line_client.js';

await init();
startWorker();
