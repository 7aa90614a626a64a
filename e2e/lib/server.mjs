// Starts the real line-server binary the way an operator would, and reads the link it prints.
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { reapOnExit } from './reaper.mjs';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const binary = path.join(repoRoot, 'target/release/line-server');

/**
 * Starts line-server on `port` (0: any free port) and resolves once it printed its start links.
 * `siteurl` is what the links point at (the privacy proxy, when there is one). With `netns`, it
 * runs inside that network namespace (`ip netns exec`), listening on `bind`. `webtransport`:
 * serve WebTransport too (on UDP `port`); off by default, so that a suite's calls go over the
 * WebSockets its proxy records (the page finds no endpoint and uses one at once).
 */
export async function startServer({ port = 0, siteurl, apikey, env = {}, bind = '127.0.0.1', netns, webtransport = false } = {}) {
  reapOnExit();
  const args = ['--bind', bind, '--port', String(port), '--www', testWww()];
  if (!webtransport) args.push('--no-webtransport');
  const childEnv = { ...process.env, RUST_LOG: 'info', ...env };
  if (siteurl) childEnv.SITEURL = siteurl;
  if (apikey) childEnv.APIKEY = apikey;
  const [command, commandArgs] = netns ? ['ip', ['netns', 'exec', netns, binary, ...args]] : [binary, args];
  const child = spawn(command, commandArgs, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const link = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`line-server printed no link in 10 s:\n${log}`)), 10_000);
    const check = () => {
      const m = /Try (\S+#generate_leaf)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.on('data', check);
    child.on('exit', (code) => reject(new Error(`line-server exited with ${code}:\n${log}`)));
  });
  return {
    link,
    apikey: new URL(link).searchParams.get('apikey'),
    log: () => log,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.on('exit', () => resolve());
        child.kill('SIGTERM');
      }),
    kill: () => child.kill('SIGKILL'),
    child,
  };
}

/**
 * The client as built (`www/`), plus the suite's recorder worklet: the page's
 * Content-Security-Policy loads worklet modules from its own origin only.
 */
function testWww() {
  const dir = path.join(repoRoot, 'target/e2e/www');
  mkdirSync(dir, { recursive: true });
  cpSync(path.join(repoRoot, 'www'), dir, { recursive: true });
  copyFileSync(path.join(repoRoot, 'e2e/lib/tap.js'), path.join(dir, 'e2e-tap.js'));
  return dir;
}

/** A TCP port that was free a moment ago, for a server that must come back on the same port. */
export async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
