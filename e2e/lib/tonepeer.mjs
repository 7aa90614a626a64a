// The native tone peer: `line-loadgen tone-call`, line's own call engine outside a browser, sends
// pure tones generated sample by sample in real time and reports what it heard as JSON.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from './server.mjs';
import { reapOnExit } from './reaper.mjs';

const loadgen = path.join(repoRoot, 'target/release/line-loadgen');

/**
 * Runs a tone peer on `link` sending `tones` and listening for `heard` (Hz), with the further
 * `tone-call` arguments `args`, until it exits; resolves with its report. `wrap` turns the
 * command line into another (e.g. run inside a network namespace).
 */
export function runTonePeer(link, { tones, heard, args = [], wrap = (argv) => argv, label = 'tone peer' }) {
  reapOnExit();
  const [command, ...argv] = wrap([loadgen, 'tone-call', '--tones', tones.join(','), '--heard', heard.join(','), ...args]);
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { env: { ...process.env, LINE_PEER_LINK: link }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${label} exited ${code}:\n${out}${err}`))));
  });
}
