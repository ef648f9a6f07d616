// edged meeting page: joins the room with a token, shows a tile per participant (the
// appliance camera among them), publishes this browser's camera and microphone when the
// token allows it, and renders whatever the room client (room.js) reports.
//
// URL: #token=… (kept in localStorage, then removed from the address bar); ?name=Alice;
// ?video=640x360@15 (capture size and rate); ?publish=0 (view only); ?publish=1 (publish
// also on the appliance's own screen, which is view only by default).

import { Room } from './room.js';

const TOKEN_KEY = 'edge-token';
const STATUS_EVERY_MS = 5000;
const STATS_EVERY_MS = 1000;
const TOAST_MS = 4000;
const TOKEN_HELP = "it is printed in edged's log (or set auth.token in the config)";
const QUALITY_NAMES = { low: 'low', medium: 'medium', high: 'high' };

const $ = (id) => document.getElementById(id);
const ui = {
  state: $('state'), roomName: $('room-name'), viewOnly: $('view-only'),
  banner: $('banner'), bannerText: $('banner-text'), rejoin: $('rejoin'),
  grid: $('grid'), template: $('tile-template'), toast: $('toast'),
  form: $('token-form'), input: $('token-input'), message: $('token-message'),
  mic: $('mic'), cam: $('cam'), sound: $('sound'), leave: $('leave'),
};
const params = new URLSearchParams(location.search);

let room = null;
let token = '';
let trustedPage = false; // the token came from the page: this is the appliance's own screen
let localError = '';     // why we do not publish although the token allows it
let transient = null;    // {text, until}: a server error shown for a while
let toastTimer = 0;
const tiles = new Map(); // participant id -> tile
let soundBlocked = false;

// Kept current for automated tests (and for poking at from the console).
const edge = {
  state: 'connecting',
  participantId: '',
  participants: {},    // id -> {name, tracks: [{id, kind, source, muted}]}, not us
  speakers: [],        // ids speaking now, loudest first
  spoken: {},          // id -> the highest level it ever spoke at
  errors: [],
  error: '',
  camera: { state: 'unknown', error: '' },
  viewOnly: '',
  stats: () => (room ? room.stats() : Promise.resolve([])),
  publishStats: () => (room ? room.publishStats() : Promise.resolve([])),
  setQuality: (trackId, q) => room && room.setQuality(trackId, q),
  setMuted: (source, muted) => room && room.setMuted(source, muted),
  leave: () => room && room.leave(),
};
Object.defineProperties(edge, {
  pub: { get: () => (room ? room.pub : null), enumerable: true },
  sub: { get: () => (room ? room.sub : null), enumerable: true },
  room: { get: () => room },
});
window.edge = edge;

// ---- token -------------------------------------------------------------------------------

function readToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = (hash.get('token') || '').trim();
  if (fromHash) {
    trustedPage = false;
    storeToken(fromHash);
    hash.delete('token');
    const rest = hash.toString();
    // Keep the secret out of the address bar, bookmarks and screenshots.
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    return fromHash;
  }
  const stored = loadToken();
  if (stored) return stored;
  const meta = document.querySelector('meta[name="edge-token"]');
  trustedPage = !!(meta && meta.content.trim());
  return trustedPage ? meta.content.trim() : '';
}

// localStorage throws in some private modes: then the token just lives in memory.
function storeToken(value) { try { localStorage.setItem(TOKEN_KEY, value); } catch { /* ignore */ } }
function loadToken() { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; } }
function forgetToken() { try { localStorage.removeItem(TOKEN_KEY); } catch { /* ignore */ } }

function askForToken(rejected) {
  const old = room;
  room = null;
  if (old) old.stop();
  if (rejected) forgetToken(); // so a later visit falls back to the server's meta tag, if any
  edge.error = rejected ? 'access token rejected' : 'access token required';
  ui.message.textContent = rejected
    ? `The access token was rejected — ${TOKEN_HELP}`
    : `Access token required — ${TOKEN_HELP}`;
  ui.form.hidden = false;
  ui.input.value = '';
  ui.input.focus();
  setState('unauthorized');
  render();
}

// ---- local media -------------------------------------------------------------------------

// ?video=640x360@15 -> capture constraints; default 1280x720 at 30 fps.
function videoConstraints() {
  const m = /^(\d+)x(\d+)(?:@(\d+))?$/.exec(params.get('video') || '');
  const [w, h, fps] = m ? [+m[1], +m[2], +(m[3] || 30)] : [1280, 720, 30];
  return { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: fps } };
}

// Camera and microphone, or whichever of them works; null when neither does.
async function openMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('this page needs https (or localhost) for camera and microphone');
  }
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  const video = videoConstraints();
  let first;
  for (const c of [{ audio, video }, { audio }, { video }]) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (err) {
      first = first || err;
      if (err.name === 'NotAllowedError') break; // refused: asking again would nag
    }
  }
  throw first;
}

async function startMedia(r) {
  if (params.get('publish') === '0') { localError = 'view only (?publish=0)'; return; }
  // The appliance's own screen (or make run's page) shows the room; its camera is already
  // in it as the appliance camera. ?publish=1 sends this browser's camera and microphone too.
  if (trustedPage && params.get('publish') !== '1') { localError = "this appliance's own screen (?publish=1 to send this browser's camera)"; return; }
  if (!r.canPublish) return;
  try {
    const stream = await openMedia();
    if (r !== room) { stream.getTracks().forEach((t) => t.stop()); return; }
    localError = '';
    r.setLocalStream(stream);
  } catch (err) {
    localError = `no camera or microphone (${err.name || 'error'}: ${err.message})`;
    render();
  }
}

// ---- the room ----------------------------------------------------------------------------

function join() {
  const old = room;
  room = null;
  if (old) old.stop();
  ui.form.hidden = true;
  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/rtc`;
  const r = new Room({ url, token, name: params.get('name') || '' });
  room = r;
  edge.errors = r.errors;
  edge.spoken = {};
  r.addEventListener('change', (ev) => { if (r === room) onChange(ev.detail); });
  r.connect();
  startMedia(r);
  render();
}

function onChange(d) {
  switch (d.what) {
    case 'error':
      edge.error = d.message;
      if (room.state === 'joined') transient = { text: errorText(d), until: Date.now() + 8000 };
      break;
    case 'joined':
      toast(`${d.name} joined`);
      break;
    case 'left':
      toast(`${d.name} left`);
      break;
    case 'state':
      if (room.state === 'unauthorized') return askForToken(true);
      if (room.state === 'joined') { transient = null; edge.error = ''; statusTick(); }
      break;
    case 'speakers':
      for (const s of room.speakers) edge.spoken[s.participant_id] = Math.max(edge.spoken[s.participant_id] || 0, s.level);
      break;
  }
  render();
}

function errorText(e) {
  return e.code ? `${e.message} (${e.code})` : e.message;
}

// ---- rendering ---------------------------------------------------------------------------

// The page's state (edge.state) from the room client's.
const PAGE_STATES = { idle: 'connecting', connecting: 'connecting', joined: 'live', reconnecting: 'reconnecting', unauthorized: 'unauthorized', left: 'left' };

function setState(state) {
  edge.state = state;
  ui.state.dataset.state = state;
  ui.state.textContent = state;
  document.body.dataset.state = state;
}

function bannerText() {
  if (!room) return '';
  if (room.state === 'left') {
    if (room.fatal) return `Could not join: ${room.fatal}`;
    const why = {
      replaced: 'This meeting was opened in another tab or device with the same identity.',
      removed: 'An operator removed you from the room.',
      left: 'You left the meeting.',
    };
    return why[room.leftReason] || `The meeting ended (${room.leftReason || 'closed'}).`;
  }
  if (room.state === 'reconnecting') {
    const last = room.errors[room.errors.length - 1];
    const secs = Math.max(0, Math.round(((room.retryAt || 0) - Date.now()) / 1000));
    return `${last ? errorText(last) : 'Connection lost'} — reconnecting${secs ? ` in ${secs} s` : ''}`;
  }
  const cam = edge.camera;
  if (cam.state === 'down') return `The room camera is down: ${cam.error || 'no picture'}`;
  if (transient && transient.until > Date.now()) return transient.text;
  return '';
}

function render() {
  const state = room ? PAGE_STATES[room.state] || room.state : edge.state;
  if (state !== edge.state) setState(state);
  const text = bannerText();
  ui.bannerText.textContent = text;
  ui.banner.hidden = !text;
  ui.rejoin.hidden = !(room && room.state === 'left' && !room.fatal);
  ui.roomName.textContent = room && room.roomName ? `room ${room.roomName}` : '';

  edge.participantId = room && room.self ? room.self.id : '';
  edge.viewOnly = !room ? '' : room.viewOnly || localError || (room.canPublish ? '' : 'your token does not allow publishing');
  ui.viewOnly.hidden = !(room && room.state === 'joined' && !room.localStream);
  ui.viewOnly.title = edge.viewOnly || 'waiting for camera and microphone';
  edge.speakers = room ? room.speakers.map((s) => s.participant_id) : [];
  const ps = {};
  if (room) {
    for (const p of room.participants.values()) {
      ps[p.id] = { name: p.name, tracks: [...p.tracks.values()].map((t) => ({ id: t.id, kind: t.kind, source: t.source, muted: t.muted })) };
    }
  }
  edge.participants = ps;

  const publishing = !!(room && room.localStream);
  setControl(ui.mic, publishing && room.localStream.getAudioTracks().length > 0, room && room.muted.microphone, 'Mute mic', 'Unmute mic');
  setControl(ui.cam, publishing && room.localStream.getVideoTracks().length > 0, room && room.muted.camera, 'Stop camera', 'Start camera');
  ui.sound.hidden = !soundBlocked;
  ui.leave.disabled = !room || room.state === 'left';

  renderTiles();
}

function setControl(button, enabled, muted, onText, offText) {
  button.hidden = !enabled;
  button.setAttribute('aria-pressed', String(!!muted));
  button.querySelector('.text').textContent = muted ? offText : onText;
}

// The tiles: us first, then the appliance camera, then everyone else by name.
function renderTiles() {
  const want = [];
  // Our own tile only when we send something: a view-only screen is all the others.
  if (room && room.self && room.localStream) want.push({ id: room.self.id, self: true, name: `${room.self.name} (you)` });
  if (room) {
    const others = [...room.participants.values()].sort((a, b) =>
      (a.id === 'camera' ? -1 : b.id === 'camera' ? 1 : a.name.localeCompare(b.name)));
    for (const p of others) want.push({ id: p.id, name: p.name, p });
  }
  const ids = new Set(want.map((w) => w.id));
  for (const [id, tile] of tiles) {
    if (!ids.has(id)) { detach(tile); tile.el.remove(); tiles.delete(id); }
  }
  const speaking = new Set(edge.speakers);
  want.forEach((w, i) => {
    let tile = tiles.get(w.id);
    if (!tile) { tile = makeTile(w.id); tiles.set(w.id, tile); }
    if (ui.grid.children[i] !== tile.el) ui.grid.insertBefore(tile.el, ui.grid.children[i] || null);
    updateTile(tile, w, speaking.has(w.id));
  });
  ui.grid.dataset.count = String(want.length);
}

function makeTile(id) {
  const el = ui.template.content.firstElementChild.cloneNode(true);
  const tile = {
    id, el, video: el.querySelector('video'), avatar: el.querySelector('.avatar'), notice: el.querySelector('.notice'),
    name: el.querySelector('.name'), micOff: el.querySelector('.mic-off'), camOff: el.querySelector('.cam-off'),
    info: el.querySelector('.info'), quality: el.querySelector('.quality'),
    videoTrack: null, audio: new Map(), videoId: '',
  };
  el.dataset.participant = id;
  tile.quality.addEventListener('change', () => { if (room && tile.videoId) room.setQuality(tile.videoId, tile.quality.value); });
  tile.video.addEventListener('click', () => tile.video.play().catch(() => {}));
  return tile;
}

function detach(tile) {
  tile.video.srcObject = null;
  for (const a of tile.audio.values()) { a.srcObject = null; a.remove(); }
  tile.audio.clear();
}

function updateTile(tile, w, speaking) {
  const { el } = tile;
  tile.name.textContent = w.name;
  el.classList.toggle('self', !!w.self);
  el.classList.toggle('speaking', speaking);
  el.setAttribute('aria-label', `${w.name}${speaking ? ', speaking' : ''}`);
  tile.avatar.textContent = (w.name.trim()[0] || '?').toUpperCase();

  let videoTrack = null;
  let camMuted = false;
  let micMuted = false;
  let videoInfo = null;
  const audioTracks = new Map();
  if (w.self) {
    const s = room.localStream;
    videoTrack = s ? s.getVideoTracks()[0] || null : null;
    camMuted = room.muted.camera;
    micMuted = room.muted.microphone && !!(s && s.getAudioTracks().length);
    tile.notice.hidden = !edge.viewOnly;
    tile.notice.textContent = edge.viewOnly ? `View only: ${edge.viewOnly}` : '';
  } else {
    for (const t of w.p.tracks.values()) {
      const mst = room.remote.get(t.id);
      if (t.kind === 'video' && (!videoInfo || t.source === 'camera')) { videoInfo = t; videoTrack = mst || null; camMuted = !!t.muted; }
      if (t.kind === 'audio') { micMuted = micMuted || !!t.muted; if (mst) audioTracks.set(t.id, mst); }
    }
    const notice = w.id === 'camera' ? cameraNotice() : '';
    tile.notice.hidden = !notice;
    tile.notice.textContent = notice;
  }

  if (tile.videoTrack !== videoTrack) {
    tile.videoTrack = videoTrack;
    tile.video.srcObject = videoTrack ? new MediaStream([videoTrack]) : null;
    if (videoTrack) tile.video.play().catch(() => { /* muted autoplay may still be refused; a tap plays it */ });
  }
  el.classList.toggle('no-video', !videoTrack || camMuted);
  tile.micOff.hidden = !micMuted;
  tile.camOff.hidden = !camMuted || !videoTrack;

  // Remote audio plays in its own element; the video elements stay muted, so autoplay works.
  for (const [id, a] of tile.audio) {
    if (audioTracks.get(id) !== a.track) { a.srcObject = null; a.remove(); tile.audio.delete(id); }
  }
  for (const [id, mst] of audioTracks) {
    if (tile.audio.has(id)) continue;
    const a = document.createElement('audio');
    a.autoplay = true;
    a.track = mst;
    a.srcObject = new MediaStream([mst]);
    el.append(a);
    tile.audio.set(id, a);
    a.play().catch(() => { soundBlocked = true; ui.sound.hidden = false; });
  }

  tile.videoId = videoInfo ? videoInfo.id : '';
  const layered = videoInfo && (videoInfo.layers || []).length > 1;
  tile.quality.hidden = !layered;
  tile.quality.setAttribute('aria-label', `Video quality for ${w.name}`);
  if (layered) tile.quality.value = room.quality.get(videoInfo.id) || 'auto';
  if (w.self) tile.info.textContent = selfInfo();
}

function cameraNotice() {
  const c = edge.camera;
  if (c.state === 'down') return `Camera down: ${c.error || 'no picture'}`;
  if (c.privacy) return 'Privacy mode: the camera is covered';
  if (c.inCall === false) return 'The appliance left the call';
  return '';
}

function selfInfo() {
  if (!room.localStream) return '';
  const v = room.localStream.getVideoTracks()[0];
  const s = v ? v.getSettings() : {};
  const layers = room.activeLayers ? ` · sending ${room.activeLayers.join(' ') || 'no layer'}` : '';
  return s.width ? `${s.width}×${s.height}${layers}` : '';
}

function toast(text) {
  ui.toast.textContent = text;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { ui.toast.hidden = true; }, TOAST_MS);
}

// ---- periodic work -----------------------------------------------------------------------

// Per-tile resolution and frame rate, from the subscribe connection's stats.
async function statsTick() {
  if (!room || !room.sub) return;
  let stats;
  try { stats = await room.stats(); } catch { return; }
  for (const s of stats) {
    if (s.kind !== 'video') continue;
    const tile = tiles.get(s.participant);
    if (!tile || tile.videoId !== s.track) continue;
    const layer = room.layers.get(s.track);
    const parts = [];
    if (s.frameWidth) parts.push(`${s.frameWidth}×${s.frameHeight}`);
    if (s.framesPerSecond) parts.push(`${Math.round(s.framesPerSecond)} fps`);
    if (layer && QUALITY_NAMES[layer.quality]) parts.push(layer.quality);
    tile.info.textContent = parts.join(' · ');
  }
}

// The appliance camera's own status, for tokens that may read it (the appliance's screen and
// operators): a camera that is down says why instead of showing a black tile.
async function statusTick() {
  if (!room || !room.isAdmin || room.state !== 'joined') return;
  try {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 4000);
    const res = await fetch('/api/status', { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store', signal: ctl.signal });
    clearTimeout(timer);
    if (!res.ok) return;
    const st = await res.json();
    edge.camera = {
      state: st.live ? 'live' : st.starting ? 'starting' : 'down', error: st.error || '',
      privacy: !!st.privacy, inCall: st.in_call !== false, source: st.source, encoder: st.encoder,
    };
    render();
  } catch { /* status is a nicety: never fail the meeting because of it */ }
}

// ---- wiring ------------------------------------------------------------------------------

ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = ui.input.value.trim();
  if (!value) return;
  token = value;
  trustedPage = false;
  storeToken(value);
  join();
});

ui.mic.addEventListener('click', () => room && room.setMuted('microphone', !room.muted.microphone));
ui.cam.addEventListener('click', () => room && room.setMuted('camera', !room.muted.camera));
ui.leave.addEventListener('click', () => { if (room) { room.leave(); render(); } });
ui.rejoin.addEventListener('click', () => join());
ui.sound.addEventListener('click', () => {
  soundBlocked = false;
  for (const tile of tiles.values()) for (const a of tile.audio.values()) a.play().catch(() => { soundBlocked = true; });
  render();
});

// A new #token=… pasted into the address bar takes effect without a reload.
addEventListener('hashchange', () => {
  if (!new URLSearchParams(location.hash.slice(1)).has('token')) return;
  token = readToken();
  join();
});

addEventListener('pagehide', () => { if (room) room.stop(); });
// Back/forward cache restores a page whose session we already ended.
addEventListener('pageshow', (ev) => { if (ev.persisted && token) join(); });

function start() {
  if (!window.RTCPeerConnection || !window.WebSocket) {
    setState('left');
    edge.error = 'this browser does not support WebRTC';
    ui.bannerText.textContent = `Cannot join: ${edge.error}`;
    ui.banner.hidden = false;
    return;
  }
  setInterval(statsTick, STATS_EVERY_MS);
  setInterval(statusTick, STATUS_EVERY_MS);
  setInterval(render, 1000); // countdowns and expiring notices
  token = readToken();
  if (!token) return askForToken(false);
  join();
}

start();
