// An impaired network for a test: two network namespaces joined by `line-netem` (a userspace
// router between a TUN device in each; the kernel here has no netem qdisc). The far side holds
// the server, the near side the clients; every packet between them crosses the impairment.
// Needs root (CAP_NET_ADMIN, and /run/netns for `ip netns`).
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { repoRoot } from './server.mjs';
import { reapOnExit } from './reaper.mjs';

const binary = path.join(repoRoot, 'target/release/line-netem');

/**
 * Makes the namespaces and starts the link with `profile` and `seed`; resolves once packets
 * flow. `command(line)` sends a command (`profile NAME`, `outage MS`, `stats`) and resolves with
 * its JSON answer; `stop()` ends the link and removes the namespaces.
 */
export async function startNetwork({ profile = 'lan', seed }) {
  reapOnExit();
  if (process.getuid?.() !== 0) {
    throw new Error('an impaired network needs root: network namespaces and TUN devices (CAP_NET_ADMIN)');
  }
  const tag = `${process.pid}`;
  const near = `line-near-${tag}`;
  const far = `line-far-${tag}`;
  for (const ns of [near, far]) execFileSync('ip', ['netns', 'add', ns]);
  const removeNamespaces = () => {
    for (const ns of [near, far]) {
      try {
        execFileSync('ip', ['netns', 'del', ns]);
      } catch {
        // Already gone.
      }
    }
  };
  const child = spawn(binary, ['--near', near, '--far', far, '--profile', profile, '--seed', String(seed)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const answers = [];
  const waiting = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const answer = JSON.parse(line);
    const next = waiting.shift();
    if (next) next(answer);
    else answers.push(answer);
  });
  const nextAnswer = () =>
    new Promise((resolve, reject) => {
      if (answers.length) return resolve(answers.shift());
      const timer = setTimeout(() => reject(new Error(`line-netem did not answer in 10 s:\n${log}`)), 10_000);
      waiting.push((a) => {
        clearTimeout(timer);
        resolve(a);
      });
    });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  let ready;
  try {
    ready = await Promise.race([
      nextAnswer(),
      exited.then((code) => Promise.reject(new Error(`line-netem exited with ${code}:\n${log}`))),
    ]);
  } catch (e) {
    child.kill('SIGKILL');
    removeNamespaces();
    throw e;
  }
  return {
    near,
    far,
    nearAddr: ready.near,
    farAddr: ready.far,
    ready,
    /** Sends one command and resolves with its answer. */
    command: async (line) => {
      child.stdin.write(`${line}\n`);
      const answer = await nextAnswer();
      if (answer.error) throw new Error(`line-netem: ${line}: ${answer.error}`);
      return answer;
    },
    /** `argv` run inside namespace `ns`. */
    inNamespace: (ns, argv) => ['ip', 'netns', 'exec', ns, ...argv],
    stop: async () => {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      removeNamespaces();
    },
  };
}

/** A script in `dir` that starts Chromium inside network namespace `ns`, for Playwright's
 *  `executablePath` (it starts this instead of the browser). */
export function chromiumIn(ns, dir) {
  const script = path.join(dir, `chromium-in-${ns}.sh`);
  writeFileSync(script, `#!/bin/sh\nexec ip netns exec ${ns} ${process.env.CHROMIUM || '/usr/bin/chromium'} "$@"\n`);
  chmodSync(script, 0o755);
  return script;
}
