// The error states a person can act on (issue 5), each in a real headless Chromium against
// line-server: prints what the page shows and saves a screenshot of each.
//   node errors.mjs target/debug/line-server www target/e2e-manual   (setup as in call.mjs)
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';

const [server, www, out] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const PORT = 18000 + Math.floor(Math.random() * 1000);
const KEY = 'c'.repeat(40) + 'D'.repeat(40);
const base = `http://127.0.0.1:${PORT}`;
const srv = spawn(server, ['--port', String(PORT), '--bind', '127.0.0.1', '--www', www], {
  env: { ...process.env, APIKEY: KEY, SITEURL: base }, stdio: 'ignore',
});
await new Promise((r) => setTimeout(r, 1000));

const flags = (mic) => [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
  ...(mic ? ['--use-fake-ui-for-media-stream'] : []), '--use-fake-device-for-media-stream',
  '--use-file-for-fake-audio-capture=/tmp/e2e-scratch/tone440.wav',
];
const leaf = 'leaf_' + 'Q'.repeat(42) + 'A';
const cases = [
  ['no-leaf', `${base}/line.html?apikey=${KEY}`, false],
  ['bad-leaf', `${base}/line.html?apikey=${KEY}#leaf_tooshort`, false],
  ['bad-link', `${base}/line.html?apikey=${KEY}&rate=1000#${leaf}`, false],
  ['no-api-key', `${base}/line.html#${leaf}`, false],
  ['api-key-refused', `${base}/line.html?apikey=wrongkey&studio=1#${leaf}`, true],
  ['mic-denied', `${base}/line.html?apikey=${KEY}#${leaf}`, true, false],
];
let failed = 0;
for (const [code, url, join, mic = true] of cases) {
  const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true,
    ignoreDefaultArgs: ['--mute-audio'], args: flags(mic) });
  const page = await b.newPage({ viewport: { width: 720, height: 700 } });
  page.on('pageerror', (e) => console.log(`[${code}] pageerror: ${e}`));
  await page.goto(url);
  if (join) {
    await page.waitForFunction(() => document.body.dataset.state === 'ready');
    await page.click('#join');
  }
  await page.waitForFunction(() => document.body.dataset.error || document.body.dataset.notice, null, { timeout: 15000 })
    .catch(() => {});
  const got = await page.evaluate(() => ({
    state: document.body.dataset.state, error: document.body.dataset.error,
    notice: document.body.dataset.notice, text: document.getElementById('error-message').textContent,
    url: location.href.replace(/apikey=[A-Za-z]+/, 'apikey=…'),
  }));
  const ok = got.error === code || got.notice === code;
  if (!ok) failed++;
  console.log(ok ? 'ok  ' : 'FAIL', code, JSON.stringify(got));
  await page.screenshot({ path: `${out}/err-${code}.png`, fullPage: true });
  await b.close();
}
srv.kill('SIGTERM');
process.exitCode = failed ? 1 : 0;
