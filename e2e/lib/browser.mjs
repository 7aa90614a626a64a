// Headless Chromium with a fake microphone playing a WAV file, driven by playwright-core
// (../shared/BROWSER-TESTING.md has why each flag is here).
import { chromium } from 'playwright-core';
import { childrenOf } from './cpu.mjs';
import { reapOnExit } from './reaper.mjs';

const BASE_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * Starts one browser, as one person. `wav`: the file its microphone plays. `allowMic: false` leaves out
 * the flag that grants the microphone, as for a person who refuses it. `pulse`: a PULSE_SERVER to
 * play into (see pulse.mjs) instead of Chromium's fake output device. `executablePath` and `args`:
 * another way to start Chromium (e.g. inside a network namespace), and flags of its own.
 */
export async function launchPerson(name, { wav, allowMic = true, pulse, executablePath, args: extra = [] } = {}) {
  reapOnExit();
  const args = [...BASE_FLAGS, '--use-fake-device-for-media-stream', ...extra];
  if (allowMic) args.push('--use-fake-ui-for-media-stream');
  if (wav) args.push(`--use-file-for-fake-audio-capture=${wav}`);
  // The browser is a child of this process: the one child that appears during the launch.
  const before = new Set(childrenOf(process.pid));
  const browser = await chromium.launch({
    executablePath: executablePath ?? (process.env.CHROMIUM || '/usr/bin/chromium'),
    headless: true,
    ignoreDefaultArgs: ['--mute-audio'],
    args,
    env: pulse ? { ...process.env, PULSE_SERVER: pulse } : process.env,
  });
  const pid = childrenOf(process.pid).find((c) => !before.has(c));
  const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
  const page = await context.newPage();
  const console_ = [];
  page.on('console', (m) => console_.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console_.push(`[${name}] pageerror: ${e.message}`));
  return { name, engine: 'chromium', version: `Chromium ${browser.version()}`, browser, pid, page, console: console_, close: () => browser.close() };
}
