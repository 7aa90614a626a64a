// The suite's own plumbing: a test file that the runner ends (its timeout) takes every process it
// started with it, so the next file does not run beside a call's browsers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const reaper = fileURLToPath(new URL('./lib/reaper.mjs', import.meta.url));

// A stand-in for a test file: arms the reaper, starts one child in its own process group (as
// playwright starts a browser) and one in its own, prints their pids, then waits to be ended.
const standIn = `
  import { spawn } from 'node:child_process';
  import { reapOnExit } from ${JSON.stringify(reaper)};
  reapOnExit();
  const detached = spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' });
  const attached = spawn('sleep', ['1000'], { stdio: 'ignore' });
  console.log(JSON.stringify([detached.pid, attached.pid]));
  setInterval(() => {}, 1000);
`;

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

for (const [how, signal, code] of [['the runner\'s SIGTERM', 'SIGTERM', 143], ['an interrupt', 'SIGINT', 130]]) {
  test(`a test process ended by ${how} ends the processes it started`, async (t) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', standIn], { stdio: ['ignore', 'pipe', 'pipe'] });
    const [line] = await once(child.stdout, 'data');
    const pids = JSON.parse(String(line));
    t.after(() => { for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL'); });
    assert.ok(pids.every(alive), 'both children run before the signal');
    child.kill(signal);
    const [exitCode] = await once(child, 'exit');
    assert.equal(exitCode, code, `the test process exits as ${signal} asks`);
    // SIGKILL is delivered before kill() returns; give the kernel a moment to reap zombies' parents.
    const deadline = Date.now() + 2000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(pids.filter(alive), [], 'no child outlives the test process');
  });
}
