// Headless Firefox as one person, driven by puppeteer-core over WebDriver BiDi (Playwright's
// Firefox is a patched build; it cannot drive a stock Firefox). Its fake microphone plays a sine
// set by a pref, at amplitude 0.1; its audio output is a PulseAudio daemon (see pulse.mjs),
// without which Firefox never starts an AudioContext.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { reapOnExit } from './reaper.mjs';

/** What Firefox's fake microphone plays: a sine of the pref's frequency at this amplitude. */
export const FAKE_MIC_AMPLITUDE = 0.1;

/**
 * Starts one Firefox. `tone`: the frequency its microphone plays, Hz. `pulse`: the PULSE_SERVER
 * it plays into; `null` leaves it without any audio output device. `allowMic: false` makes it
 * refuse the microphone, as for a person who blocked it.
 */
export async function launchFirefox(name, { tone = 1000, pulse, allowMic = true } = {}) {
  reapOnExit();
  const profile = mkdtempSync(path.join(os.tmpdir(), 'line-firefox-'));
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: profile,
    // A socket that does not exist: no output device at all (Firefox would otherwise try ALSA).
    env: { ...process.env, PULSE_SERVER: pulse ?? `unix:${path.join(profile, 'no-audio-here')}` },
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.audio.fake_frequency': tone,
      // Without this getUserMedia waits for a prompt nobody answers; with the microphone blocked
      // by default instead, it rejects as a refusal does.
      'media.navigator.permission.disabled': allowMic,
      ...(allowMic ? {} : { 'permissions.default.microphone': 2 }),
      'media.autoplay.default': 0,
    },
  });
  const version = await browser.version();
  const [page] = await browser.pages();
  await page.setViewport({ width: 900, height: 1000 });
  const console_ = [];
  page.on('console', (m) => console_.push(`[${name}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console_.push(`[${name}] pageerror: ${e.message}`));
  return {
    name,
    engine: 'firefox',
    version,
    pid: browser.process().pid,
    page: new PuppeteerPage(page),
    console: console_,
    mic: { freqs: [tone], amplitude: FAKE_MIC_AMPLITUDE },
    close: async () => {
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * The few calls the suite makes on a page, with Playwright's signatures (see page.mjs), over a
 * puppeteer page.
 */
class PuppeteerPage {
  constructor(page) {
    this.page = page;
  }

  goto(url) {
    return this.page.goto(url);
  }

  click(selector) {
    return this.page.click(selector);
  }

  inputValue(selector) {
    return this.page.$eval(selector, (el) => el.value);
  }

  textContent(selector) {
    return this.page.$eval(selector, (el) => el.textContent);
  }

  isVisible(selector) {
    return this.page.$eval(selector, (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden');
  }

  url() {
    return this.page.url();
  }

  evaluate(fn, arg) {
    return this.page.evaluate(fn, arg);
  }

  async waitForFunction(fn, arg, { timeout = 30_000 } = {}) {
    // Polled, not on animation frames, which a headless page may not run.
    await this.page.waitForFunction(fn, { timeout, polling: 50 }, arg);
  }

  screenshot({ path: file, fullPage }) {
    return this.page.screenshot({ path: file, fullPage });
  }
}
