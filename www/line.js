// line.html's controller: reads the link, shows it, and drives a LineClient. It uses only the
// public API of the wasm package (docs/CLIENT.md); the live client is `window.line`.
import init, { LineClient, readLink, qrSvg, version } from './pkg/line_client.js';

const $ = (id) => document.getElementById(id);
const STATUS = {
  loading: 'loading…', 'no-leaf': 'this link has no call in it', ready: 'ready to join',
  starting: 'starting audio…', connecting: 'connecting…', waiting: 'waiting for the other person',
  'in-call': 'in call', reconnecting: 'reconnecting…', ended: 'call ended', error: 'cannot start the call',
};
// Notices a person can act on while the call goes on; fatal errors replace the page's state.
const FATAL_STATE = 'error';

let link = null;

function setState(state) {
  document.body.dataset.state = state;
  $('status').textContent = STATUS[state] ?? state;
  // The link matters until the other person is there; in a call the controls come first.
  $('share').hidden = !link?.shareUrl || !['ready', 'starting', 'connecting', 'waiting'].includes(state);
  $('start').hidden = state !== 'ready';
  $('call').hidden = !['starting', 'connecting', 'waiting', 'in-call', 'reconnecting'].includes(state);
  $('ended').hidden = state !== 'ended';
}

// The engine's messages are lower-case clauses; the page shows sentences.
const sentence = (m) => (m ? m[0].toUpperCase() + m.slice(1) + (/[.!?]$/.test(m) ? '' : '.') : '');

function showError(code, message, action) {
  document.body.dataset.error = code;
  $('error').dataset.code = code;
  $('error-message').textContent = sentence(message);
  $('error').hidden = false;
  const button = $('error-action');
  button.hidden = !action;
  if (action) { button.textContent = action.label; button.onclick = action.run; }
  setState(FATAL_STATE);
}

function clearError() {
  delete document.body.dataset.error;
  $('error').hidden = true;
}

function showNotice(code, message) {
  $('notice').dataset.code = code;
  document.body.dataset.notice = code;
  $('notice-message').textContent = sentence(message);
  $('notice').hidden = false;
}

function clearNotice() {
  delete document.body.dataset.notice;
  $('notice').hidden = true;
}

const newLink = { label: 'Make a new call link', run: () => {
  history.replaceState(null, '', '#generate_leaf');
  start();
} };

function readPageLink() {
  try {
    return readLink();
  } catch (e) {
    showError(e.code ?? 'bad-link', e.message, e.code === 'bad-leaf' ? newLink : null);
    return null;
  }
}

function showLink() {
  $('share-link').value = link.shareUrl;
  $('share-mobile').href = link.mobileShareUrl;
  $('qr').innerHTML = qrSvg(link.mobileShareUrl);
}

const TRANSPORT = { webtransport: 'WebTransport (UDP)', websocket: 'WebSocket (TCP)' };
function fmtRate(hz) { return hz ? `${(hz / 1000).toLocaleString()} kHz` : '–'; }
function fmtBits(bps) { return `${(bps / 1e6).toFixed(2)} Mbit/s`; }
function fmtMs(ms) { return ms ? `${ms.toFixed(1)} ms` : '–'; }
function fmtTime(s) {
  const m = Math.floor(s / 60), r = Math.floor(s % 60);
  return `${m}:${String(r).padStart(2, '0')}`;
}

// Stats arrive every 100 ms; the figures are read by people, so they are redrawn twice a second
// (every redraw lays the page out again), the level meters at the full rate.
const STATS_TEXT_MS = 500;
let statsTextAt = -Infinity;

function showStats(s) {
  for (const [id, level] of [['meter-in', s.inputLevel], ['meter-out', s.outputLevel]]) {
    const el = $(id);
    el.style.transform = `scaleX(${Math.min(1, Math.sqrt(level)).toFixed(2)})`;
    el.dataset.level = level.toFixed(3);
  }
  const now = performance.now();
  if (now - statsTextAt < STATS_TEXT_MS) return;
  statsTextAt = now;
  const set = (key, text) => {
    const el = document.querySelector(`[data-stat="${key}"]`);
    if (el.textContent !== text) el.textContent = text;
  };
  set('transport', `${TRANSPORT[s.transport] ?? '–'}, ${s.frameMs} ms frames`);
  set('rates', `${fmtRate(s.wireRate)} / ${fmtRate(s.peerRate)}`);
  set('bitrate', `${fmtBits(s.sendBitrate)} / ${fmtBits(s.receiveBitrate)}`);
  const out = s.framesSentLossless > 0 ? `lossless, ${Math.round(100 * s.losslessRatio)} % of PCM` : 'PCM';
  set('coding', `${out} / ${s.framesReceivedLossless > 0 ? 'lossless' : 'PCM'}`);
  set('rttMs', fmtMs(s.rttMs));
  set('jitterDepthMs', `${s.jitterDepthMs.toFixed(1)} ms (target ${s.jitterTargetMs.toFixed(0)} ms)`);
  set('mouthToEarMs', fmtMs(s.mouthToEarMs));
  set('frames', `${s.framesSent} / ${s.framesReceived}`);
  set('lossConcealed', `${s.framesLost} / ${s.framesRepaired} / ${s.framesConcealed}`);
  set('framesDropped', String(s.framesDropped));
  set('decryptFailures', `${s.decryptFailures} / ${s.replays}`);
  set('underruns', String(s.underruns));
  set('records', `${s.recordsDropped} / ${s.recordsMalformed}`);
  const timer = fmtTime(s.callSeconds);
  if ($('timer').textContent !== timer) $('timer').textContent = timer;
}

async function join() {
  clearError();
  clearNotice();
  const client = new LineClient();
  window.line = client;
  client.addEventListener('state', (e) => {
    if (document.body.dataset.state !== FATAL_STATE) setState(e.detail.state);
    if (e.detail.state === 'in-call') clearNotice();
  });
  client.addEventListener('error', (e) => {
    const { code, message, fatal } = e.detail;
    if (!fatal) { showNotice(code, message); return; }
    const waitAgain = { label: 'Wait again', run: () => { clearError(); setState('starting'); join(); } };
    // line-taken: someone without the leaf holds this line, so only a new link gets the call through.
    const action = { 'waited-too-long': waitAgain, 'line-taken': newLink }[code] ?? null;
    showError(code, message, action);
    client.hangUp(); // release the microphone; the engine has stopped already
  });
  client.addEventListener('stats', (e) => showStats(e.detail));
  try {
    await client.join({
      apiKey: link.apiKey, leaf: link.leaf, rate: link.rate, frameMs: link.frameMs,
      studio: $('studio').checked, transport: link.transport, playout: link.playout,
      coding: link.coding,
    });
  } catch (e) {
    const retry = { label: 'Try again', run: () => { clearError(); setState('ready'); } };
    const code = e.code ?? 'audio-failed';
    showError(code, e.message, ['mic-denied', 'mic-missing', 'audio-failed'].includes(code) ? retry : null);
  }
}

function start() {
  clearError();
  link = readPageLink();
  if (!link) return;
  window.lineLink = link;
  $('studio').checked = link.studio;
  if (!link.leaf) {
    setState('no-leaf');
    showError('no-leaf', 'This link has no call key after the #. Make a new link, or ask for the full one.', newLink);
    return;
  }
  showLink();
  if (!link.apiKey) {
    showError('no-api-key', 'The link has no API key (?apikey=…), so the server will not let the call in. Ask for the full link.');
    return;
  }
  setState('ready');
}

await init();
$('version').textContent = version();
$('join').addEventListener('click', join);
$('rejoin').addEventListener('click', () => { setState('ready'); });
$('copy-link').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText($('share-link').value);
    $('copy-link').textContent = 'Copied';
  } catch {
    $('share-link').select();
  }
});
$('mute').addEventListener('click', () => {
  const muted = !window.line.muted;
  window.line.mute(muted);
  $('mute').setAttribute('aria-pressed', String(muted));
  $('mute').textContent = muted ? 'Unmute' : 'Mute';
});
$('hangup').addEventListener('click', async () => {
  await window.line.hangUp();
  setState('ended');
});
// A different link pasted into this tab: start over with it (never during a call).
window.addEventListener('hashchange', () => {
  if (!window.line || window.line.state === 'ended') start();
});
start();
