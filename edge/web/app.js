// edged viewer: plays the appliance camera over WebRTC/WHEP (one recvonly video transceiver,
// full offer after ICE gathering, no trickle), shows live stats, and reconnects by itself.
'use strict';

const WHEP_URL = '/whep/camera';
const STATUS_URL = '/api/status';
const TOKEN_KEY = 'edge-token';
const ICE_GATHER_MS = 2000;   // LAN host candidates come in milliseconds; don't hang on a dead NIC
const STALL_MS = 5000;        // disconnected, or no new frame, for this long => start over
const CONNECT_MS = 10000;     // answer received but ICE never connects => start over
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10000;
const STATUS_EVERY_MS = 5000; // the board is small: poll its status less often than our stats
const TOKEN_HELP = "it is printed in edged's log (or set auth.token in the config)";

const $ = (id) => document.getElementById(id);
const ui = {
  video: $('video'), state: $('state'), banner: $('banner'),
  form: $('token-form'), input: $('token-input'), message: $('token-message'),
  resolution: $('stat-resolution'), fps: $('stat-fps'), bitrate: $('stat-bitrate'),
  rtt: $('stat-rtt'), frames: $('stat-frames'), lost: $('stat-lost'), source: $('stat-source'),
};

// Kept current for automated tests (and for poking at from the console).
const edge = { pc: null, state: 'connecting', lastStats: null, error: '' };
window.edge = edge;

let token = '';
let session = '';       // absolute Location of the current WHEP session, for DELETE
let generation = 0;     // bumped on every (re)start, so stale async steps give up
let attempt = 0;        // consecutive failures, drives the backoff
let retryTimer = 0;
let prev = null;        // previous inbound-rtp sample, for per-second deltas
let lastFrames = null;  // framesDecoded at lastFrameAt
let lastFrameAt = 0;
let badSince = 0;       // when the connection went 'disconnected'
let answeredAt = 0;     // when the SDP answer was applied, until the connection is up
let lastStatusAt = 0;

class StreamError extends Error {
  // state: what the badge should say; retryAfter: seconds the server asked us to wait.
  constructor(message, { state = 'down', retryAfter = 0 } = {}) {
    super(message);
    this.state = state;
    this.retryAfter = retryAfter;
  }
}

// ---- token -------------------------------------------------------------------------------

function readToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = (hash.get('token') || '').trim();
  if (fromHash) {
    storeToken(fromHash);
    hash.delete('token');
    const rest = hash.toString();
    // Keep the secret out of the address bar, bookmarks and screenshots.
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    return fromHash;
  }
  const meta = document.querySelector('meta[name="edge-token"]');
  return loadToken() || (meta ? meta.content.trim() : '');
}

// localStorage throws in some private modes: then the token just lives in memory.
function storeToken(value) { try { localStorage.setItem(TOKEN_KEY, value); } catch { /* ignore */ } }
function loadToken() { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; } }
function forgetToken() { try { localStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ } }

function askForToken(rejected) {
  generation++;
  clearTimeout(retryTimer);
  teardown();
  setState('unauthorized');
  showBanner('');
  if (rejected) forgetToken(); // so a later visit falls back to the server's meta tag, if any
  else edge.error = 'access token required';
  ui.message.textContent = rejected
    ? `The access token was rejected — ${TOKEN_HELP}`
    : `Access token required — ${TOKEN_HELP}`;
  ui.form.hidden = false;
  ui.input.value = '';
  ui.input.focus();
}

// ---- UI state ----------------------------------------------------------------------------

const LABELS = {
  connecting: 'connecting', live: 'live', reconnecting: 'reconnecting',
  down: 'stream down', unauthorized: 'unauthorized',
};

function setState(state) {
  edge.state = state;
  ui.state.dataset.state = state;
  ui.state.textContent = LABELS[state];
  document.body.dataset.state = state;
}

function showBanner(text) {
  ui.banner.textContent = text;
  ui.banner.hidden = !text;
}

// ---- HTTP --------------------------------------------------------------------------------

const auth = () => ({ Authorization: `Bearer ${token}` });

// fetch with a deadline, so a hung appliance cannot stall the reconnect loop.
function request(url, options = {}, ms = 8000) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  return fetch(url, { cache: 'no-store', ...options, signal: ctl.signal })
    .finally(() => clearTimeout(timer));
}

function deleteSession(url) {
  // keepalive lets the DELETE outlive the page on unload; it frees the server's slot now
  // instead of after its ICE timeout.
  return request(url, { method: 'DELETE', headers: auth(), keepalive: true }, 2000).catch(() => {});
}

// The server's plain-text reason, without its own "stream is down:" (the banner adds it).
async function reasonOf(res) {
  const type = res.headers.get('Content-Type') || '';
  const text = !type || type.startsWith('text/plain') ? (await res.text().catch(() => '')).trim() : '';
  const reason = text.replace(/^stream is down:\s*/i, '') || `HTTP ${res.status} ${res.statusText}`.trim();
  return reason.slice(0, 300);
}

async function fetchStatus() {
  if (!token) return null;
  lastStatusAt = Date.now();
  try {
    const res = await request(STATUS_URL, { headers: auth() }, 4000);
    if (res.status === 401) return { unauthorized: true };
    return res.ok ? await res.json() : null;
  } catch {
    return null; // status is a nicety: never fail the stream because of it
  }
}

// ---- WHEP session ------------------------------------------------------------------------

// Offer H.264 only (packetization-mode=1 first): a small offer, and the codec the board sends.
function preferH264(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities('video');
  const h264 = (caps ? caps.codecs : []).filter((c) => c.mimeType.toLowerCase() === 'video/h264');
  if (!h264.length) return;
  const rank = (c) => (/packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 1);
  h264.sort((a, b) => rank(a) - rank(b));
  try { transceiver.setCodecPreferences(h264); } catch { /* keep the browser's default list */ }
}

// Resolves when gathering is complete, or after ms: a full offer without waiting forever.
function iceGathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

async function connect() {
  const gen = ++generation;
  clearTimeout(retryTimer);
  await teardown(); // DELETE the old session before asking for a new one
  if (gen !== generation) return;
  if (!token) return askForToken(false);
  ui.form.hidden = true;
  // Keep 'down'/'reconnecting' (and their banner) through retries; otherwise we are starting.
  if (edge.state === 'live' || edge.state === 'unauthorized') setState('connecting');
  try {
    const pc = new RTCPeerConnection({ iceServers: [] }); // LAN: host candidates are enough
    edge.pc = pc;
    preferH264(pc.addTransceiver('video', { direction: 'recvonly' }));
    pc.ontrack = attach;
    // Older Firefox has no connectionState; listening to both is harmless.
    pc.onconnectionstatechange = pc.oniceconnectionstatechange = () => onConnectionState(pc);
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, ICE_GATHER_MS);
    if (gen !== generation) return;

    const res = await request(WHEP_URL, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    }).catch(() => { throw new StreamError('edged is not reachable'); });
    const where = res.headers.get('Location');
    const url = where ? new URL(where, location.href).href : '';
    if (gen !== generation) { if (res.status === 201 && url) deleteSession(url); return; }
    if (res.status === 401) throw new StreamError(await reasonOf(res), { state: 'unauthorized' });
    if (res.status !== 201) {
      const retryAfter = Number(res.headers.get('Retry-After')) || 0;
      throw new StreamError(await reasonOf(res), { retryAfter });
    }
    session = url;
    const sdp = await res.text();
    if (gen !== generation) return;
    await pc.setRemoteDescription({ type: 'answer', sdp });
    answeredAt = Date.now();
  } catch (err) {
    if (gen === generation) fail(err);
  }
}

function attach(ev) {
  // A WHEP answer may carry no msid, so there may be no stream to borrow.
  const stream = ev.streams[0] || new MediaStream([ev.track]);
  if (ui.video.srcObject !== stream) ui.video.srcObject = stream;
  ui.video.play().catch(() => { /* muted autoplay may still be refused; a tap plays it */ });
}

function onConnectionState(pc) {
  if (pc !== edge.pc) return;
  const s = pc.connectionState || pc.iceConnectionState;
  if (s === 'connected' || s === 'completed') {
    badSince = 0;
    if (edge.state !== 'live') goLive();
  } else if (s === 'disconnected') {
    badSince = badSince || Date.now(); // often heals by itself (Wi-Fi roam); the tick decides
  } else if (s === 'failed' || s === 'closed') {
    restart(`connection ${s}`);
  }
}

function goLive() {
  attempt = 0;
  answeredAt = 0;
  lastFrames = null;
  lastFrameAt = Date.now(); // the stall clock starts now
  setState('live');
  showBanner('');
  checkStatus();
}

// Close the peer connection and end the server-side session; safe to call twice.
function teardown() {
  const pc = edge.pc;
  const url = session;
  edge.pc = null;
  edge.lastStats = null;
  session = '';
  prev = null;
  badSince = 0;
  answeredAt = 0;
  if (pc) {
    pc.ontrack = pc.onconnectionstatechange = pc.oniceconnectionstatechange = null;
    pc.close();
  }
  if (ui.video.srcObject) ui.video.srcObject = null;
  render(null);
  return url ? deleteSession(url) : Promise.resolve();
}

// Drop a session that went bad; ask the server why first, so the banner can say so.
async function restart(reason) {
  if (!edge.pc) return;
  const gen = ++generation;
  clearTimeout(retryTimer);
  await teardown();
  const status = await fetchStatus();
  if (gen !== generation) return;
  if (status && status.unauthorized) return askForToken(true);
  if (status && status.live === false) return fail(new StreamError(status.error || reason));
  fail(new StreamError(reason, { state: 'reconnecting' }));
}

function fail(err) {
  generation++;
  edge.error = (err && err.message) || String(err);
  teardown();
  if (err.state === 'unauthorized') return askForToken(true);
  setState(err.state || 'down');
  const backoff = Math.min(RETRY_MIN_MS * 2 ** attempt, RETRY_MAX_MS);
  const delay = Math.min(Math.max(backoff, (err.retryAfter || 0) * 1000), RETRY_MAX_MS);
  attempt++;
  showBanner(`Stream is down: ${edge.error} — retrying in ${Math.round(delay / 1000)} s`);
  retryTimer = setTimeout(connect, delay);
}

async function checkStatus() {
  const status = await fetchStatus();
  if (!status || edge.state !== 'live') return;
  if (status.unauthorized) return fail(new StreamError('access token rejected', { state: 'unauthorized' }));
  const viewers = Number(status.viewers) || 0;
  // Privacy mute sends black pictures: say why the picture is black.
  ui.source.textContent = [status.privacy ? 'privacy mute on' : '', status.source, status.encoder,
    `${viewers} viewer${viewers === 1 ? '' : 's'}`].filter(Boolean).join(' · ');
  if (status.live === false) restart(status.error || 'stream is not live');
}

// ---- stats and watchdogs -----------------------------------------------------------------

function summarize(report) {
  let inbound = null;
  let pairId = '';
  const pairs = [];
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'video') inbound = s;
    else if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    else if (s.type === 'candidate-pair') pairs.push(s);
  });
  // Chromium and Safari name the pair on the transport; Firefox flags it `selected`.
  const pair = pairs.find((p) => p.id === pairId) || pairs.find((p) => p.selected)
    || pairs.find((p) => p.nominated && p.state === 'succeeded');
  const out = { width: null, height: null, fps: null, kbps: null, rttMs: null, framesDecoded: null, packetsLost: null };
  if (pair && pair.currentRoundTripTime != null) out.rttMs = Math.round(pair.currentRoundTripTime * 10000) / 10;
  if (!inbound) return out;
  out.width = inbound.frameWidth || ui.video.videoWidth || null;
  out.height = inbound.frameHeight || ui.video.videoHeight || null;
  out.framesDecoded = inbound.framesDecoded ?? null;
  out.packetsLost = inbound.packetsLost ?? null;
  const dt = prev ? (inbound.timestamp - prev.timestamp) / 1000 : 0;
  if (dt > 0) {
    out.kbps = Math.round(((inbound.bytesReceived - prev.bytesReceived) * 8) / dt / 1000);
    out.fps = Math.round(((inbound.framesDecoded || 0) - prev.framesDecoded) / dt);
  }
  if (inbound.framesPerSecond != null) out.fps = Math.round(inbound.framesPerSecond);
  prev = { timestamp: inbound.timestamp, bytesReceived: inbound.bytesReceived || 0, framesDecoded: inbound.framesDecoded || 0 };
  return out;
}

function render(s) {
  const dash = '—';
  const v = s || {};
  ui.resolution.textContent = v.width && v.height ? `${v.width}×${v.height}` : dash;
  ui.fps.textContent = v.fps != null ? `${v.fps} fps` : dash;
  ui.bitrate.textContent = v.kbps == null ? dash
    : v.kbps >= 1000 ? `${(v.kbps / 1000).toFixed(2)} Mbit/s` : `${v.kbps} kbit/s`;
  ui.rtt.textContent = v.rttMs != null ? `${v.rttMs} ms` : dash;
  ui.frames.textContent = v.framesDecoded != null ? String(v.framesDecoded) : dash;
  ui.lost.textContent = v.packetsLost != null ? String(v.packetsLost) : dash;
  if (!s) ui.source.textContent = dash;
}

function watchdog(s) {
  const now = Date.now();
  // A hidden tab may stop decoding on purpose: that is not a stall.
  if (document.hidden || (s.framesDecoded != null && s.framesDecoded !== lastFrames)) {
    lastFrames = s.framesDecoded;
    lastFrameAt = now;
  }
  if (badSince && now - badSince > STALL_MS) return restart('connection lost');
  if (answeredAt && now - answeredAt > CONNECT_MS) return restart('could not connect to the appliance');
  if (edge.state === 'live' && now - lastFrameAt > STALL_MS) return restart('no video for 5 s');
  if (edge.state === 'live' && now - lastStatusAt >= STATUS_EVERY_MS) checkStatus();
}

async function tick() {
  const pc = edge.pc;
  if (!pc) return;
  let report;
  try { report = await pc.getStats(); } catch { return; }
  if (pc !== edge.pc) return; // torn down while we waited
  const stats = summarize(report);
  edge.lastStats = stats;
  render(stats);
  watchdog(stats);
}

// ---- wiring ------------------------------------------------------------------------------

ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = ui.input.value.trim();
  if (!value) return;
  token = value;
  storeToken(value);
  attempt = 0;
  setState('connecting');
  connect();
});

// A new #token=… pasted into the address bar takes effect without a reload.
addEventListener('hashchange', () => {
  if (!new URLSearchParams(location.hash.slice(1)).has('token')) return;
  token = readToken();
  attempt = 0;
  connect();
});

addEventListener('pagehide', () => { generation++; clearTimeout(retryTimer); teardown(); });
// Back/forward cache restores a page whose session we already ended.
addEventListener('pageshow', (ev) => { if (ev.persisted && token) connect(); });

ui.video.addEventListener('click', () => { ui.video.play().catch(() => {}); });

function start() {
  if (!window.RTCPeerConnection) {
    setState('down');
    edge.error = 'this browser does not support WebRTC';
    showBanner(`Stream is down: ${edge.error}`);
    return;
  }
  setInterval(tick, 1000);
  token = readToken();
  if (!token) return askForToken(false);
  connect();
}

start();
