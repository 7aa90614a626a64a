// A private PulseAudio daemon with a null sink: an audio output device clocked by the system
// clock, for browsers that must play in real time. Without one, headless Chromium renders into a
// fake device whose clock, at 128-frame buffers (latencyHint 0, the 48 kHz calls), runs 0.2-0.5 %
// slow; Firefox without one never starts audio at all.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { reapOnExit } from './reaper.mjs';

/** Starts the daemon; resolves with `{ server, stop }`, `server` being a PULSE_SERVER value. */
export async function startPulse() {
  reapOnExit();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'line-pulse-'));
  const socket = path.join(dir, 'native');
  // The server's default rate is what Chromium takes for the device's (an AudioContext asked
  // for no rate runs at it): 48 kHz, the sink's, as on most hardware. At PulseAudio's own
  // default, 44.1 kHz, a context with the smallest buffer fed the 48 kHz sink only 78 % of real
  // time (`node e2e/context-latency.mjs`).
  mkdirSync(path.join(dir, '.config/pulse'), { recursive: true });
  writeFileSync(path.join(dir, '.config/pulse/daemon.conf'), 'default-sample-rate = 48000\n');
  const child = spawn('pulseaudio', [
    '-n', '--daemonize=no', '--exit-idle-time=-1', '--disallow-exit', '--use-pid-file=no',
    '-L', 'module-null-sink sink_name=null rate=48000',
    '-L', `module-native-protocol-unix socket=${socket} auth-anonymous=1`,
  ], { env: { ...process.env, HOME: dir, XDG_RUNTIME_DIR: dir }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`pulseaudio did not start (is the pulseaudio package installed? just setup installs it):\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    server: `unix:${socket}`,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
