// Whatever ends a test process — its last test, an exception, or the test runner's SIGTERM when a
// file outlives its timeout — every process it started ends with it: browsers (which playwright
// and puppeteer start in their own process groups), servers, tone peers, Xvfb, PulseAudio. The
// runner goes straight on to the next file after that SIGTERM, and a call's two browsers left
// running beside it take the CPU that file's timing needs.
import { tree } from './cpu.mjs';

let armed = false;

/** Kills every descendant of this process at once (the whole tree read first, since a killed
 * parent's children move to init and out of reach). */
function reap() {
  const all = [...tree(process.pid)].filter((pid) => pid !== process.pid);
  for (const pid of all) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}

/** Installs the handlers once; every module that starts processes calls it. */
export function reapOnExit() {
  if (armed) return;
  armed = true;
  process.on('exit', reap);
  for (const [signal, number] of [['SIGTERM', 15], ['SIGINT', 2]]) {
    process.on(signal, () => {
      console.error(`# ${signal}: ending every process this test file started`);
      reap();
      process.exit(128 + number);
    });
  }
}
