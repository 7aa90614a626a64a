// WebKit, Safari's engine, as one person: Debian's WebKitGTK MiniBrowser driven by its
// WebKitWebDriver over plain W3C WebDriver (HTTP), on a virtual X display (the MiniBrowser has no
// headless mode), with WebKit's mock capture devices as the microphone (a 150 Hz hum at about
// 0.1, with short 500 and 1500 Hz bursts) and a PulseAudio daemon as its output (see pulse.mjs).
// WebKitGTK reports `crossOriginIsolated` yet has no SharedArrayBuffer unless the JavaScript
// engine is told so (`JSC_useSharedArrayBuffer=1`): `sharedMemory` picks which.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './server.mjs';
import { reapOnExit } from './reaper.mjs';

/** The hum WebKit's mock microphone plays, Hz, and about how loud. */
export const MOCK_MIC = { freqs: [150], amplitude: 0.1 };

/** Where Debian puts the MiniBrowser (under the architecture's library directory). */
function miniBrowser() {
  if (process.env.WEBKIT_MINIBROWSER) return process.env.WEBKIT_MINIBROWSER;
  for (const dir of readdirSync('/usr/lib')) {
    const candidate = path.join('/usr/lib', dir, 'webkit2gtk-4.1/MiniBrowser');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('no WebKitGTK MiniBrowser under /usr/lib/*/webkit2gtk-4.1/ (just setup installs webkit2gtk-driver)');
}

/** Starts a virtual X server on a free display; resolves with `{ display, stop }`. */
export async function startDisplay() {
  reapOnExit();
  // -displayfd: the server picks a free display and writes its number to that descriptor.
  const child = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const number = await new Promise((resolve, reject) => {
    let out = '';
    child.stdio[3].on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.trim());
    });
    child.on('exit', (code) => reject(new Error(`Xvfb exited with ${code} (just setup installs xvfb):\n${log}`)));
    setTimeout(() => reject(new Error(`Xvfb named no display in 10 s:\n${log}`)), 10_000);
  });
  return {
    display: `:${number}`,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Starts one MiniBrowser with its own WebKitWebDriver. `display`: from startDisplay(); `pulse`: a
 * PULSE_SERVER; `sharedMemory`: whether JavaScript gets SharedArrayBuffer.
 */
export async function launchWebKit(name, { display, pulse, sharedMemory = false }) {
  reapOnExit();
  const home = mkdtempSync(path.join(os.tmpdir(), 'line-webkit-'));
  const port = await freePort();
  const env = { ...process.env, DISPLAY: display, HOME: home, XDG_RUNTIME_DIR: home, XDG_CACHE_HOME: home, XDG_DATA_HOME: home };
  if (pulse) env.PULSE_SERVER = pulse;
  if (sharedMemory) env.JSC_useSharedArrayBuffer = '1';
  else delete env.JSC_useSharedArrayBuffer;
  const driver = spawn(process.env.WEBKIT_WEBDRIVER || 'WebKitWebDriver', [`--port=${port}`], {
    env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  driver.stdout.on('data', (d) => (log += d));
  driver.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => driver.on('exit', resolve));
  const stop = async () => {
    if (driver.exitCode === null) driver.kill('SIGTERM');
    await exited;
    rmSync(home, { recursive: true, force: true });
  };
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitReady(base, driver, () => log);
    const session = await webdriver(base, 'POST', '/session', {
      capabilities: {
        alwaysMatch: {
          browserName: 'MiniBrowser',
          'webkitgtk:browserOptions': {
            binary: miniBrowser(),
            args: ['--automation', '--enable-media-stream=true', '--enable-mock-capture-devices=true'],
          },
        },
      },
    });
    const url = `${base}/session/${session.sessionId}`;
    await webdriver(url, 'POST', '/timeouts', { script: 600_000, pageLoad: 30_000, implicit: 0 });
    const page = new WebDriverPage(url);
    return {
      name,
      engine: sharedMemory ? 'webkit-shared-memory' : 'webkit',
      version: `${session.capabilities.browserName} ${session.capabilities.browserVersion}`,
      pid: driver.pid, // the driver's tree: the MiniBrowser and its web and network processes
      page,
      // Classic WebDriver carries no console messages: the driver's own log stands in.
      console: [],
      log: () => log.slice(-4000),
      mic: MOCK_MIC,
      close: async () => {
        await webdriver(url, 'DELETE', '').catch(() => {});
        await stop();
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function waitReady(base, driver, log) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const status = await webdriver(base, 'GET', '/status');
      if (status.ready !== false) return;
    } catch {
      // not listening yet
    }
    if (driver.exitCode !== null || Date.now() > deadline) {
      throw new Error(`WebKitWebDriver did not start (just setup installs webkit2gtk-driver):\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One WebDriver command; resolves with its `value`, throws its error. */
async function webdriver(base, method, route, body) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await response.json();
  if (!response.ok || json.value?.error) {
    throw new Error(`WebDriver ${method} ${route}: ${json.value?.error}: ${json.value?.message}`);
  }
  return json.value;
}

const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

/** The few calls the suite makes on a page, with Playwright's signatures (see page.mjs). */
class WebDriverPage {
  constructor(session) {
    this.session = session;
    this.current = '';
  }

  async goto(url) {
    await webdriver(this.session, 'POST', '/url', { url });
  }

  /** A real click (WebKit counts it as the person's gesture, which starts audio). */
  async click(selector) {
    const found = await webdriver(this.session, 'POST', '/element', { using: 'css selector', value: selector });
    await webdriver(this.session, 'POST', `/element/${found[ELEMENT]}/click`, {});
  }

  inputValue(selector) {
    return this.evaluate((s) => document.querySelector(s).value, selector);
  }

  textContent(selector) {
    return this.evaluate((s) => document.querySelector(s).textContent, selector);
  }

  isVisible(selector) {
    return this.evaluate((s) => {
      const el = document.querySelector(s);
      return el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
    }, selector);
  }

  url() {
    return this.evaluate(() => location.href);
  }

  /** Runs `fn(arg)` in the page, awaiting a promise it returns; its value must be JSON. */
  async evaluate(fn, arg) {
    const script = `const done = arguments[arguments.length - 1];
      Promise.resolve().then(() => (${fn})(arguments[0])).then(
        (value) => done({ value: value === undefined ? null : value }),
        (error) => done({ error: String((error && error.stack) || error) }));`;
    const result = await webdriver(this.session, 'POST', '/execute/async', { script, args: [arg ?? null] });
    if (result.error) throw new Error(`in the page: ${result.error}`);
    return result.value;
  }

  async waitForFunction(fn, arg, { timeout = 30_000 } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      if (await this.evaluate(fn, arg)) return;
      if (Date.now() > deadline) throw new Error(`waitForFunction timed out after ${timeout} ms: ${fn}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async screenshot({ path: file }) {
    const png = await webdriver(this.session, 'GET', '/screenshot');
    writeFileSync(file, Buffer.from(png, 'base64'));
  }
}
