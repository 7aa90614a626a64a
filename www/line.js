// Loads the wasm client and shows its version.
import init, { version } from './pkg/line_client.js';

await init();
document.getElementById('version').textContent = version();
