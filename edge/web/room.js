// The room protocol client (docs/room-protocol.md): one WebSocket to /rtc, a publish
// RTCPeerConnection (we offer) and a subscribe one (the server offers), trickle ICE both ways.
// No DOM here: the page listens to 'change' events and renders from the state kept below.

const PING_EVERY_MS = 10_000;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 15_000;
// Leave reasons after which reconnecting would be wrong: another tab took our identity, an
// operator removed us, or we left ourselves.
const FINAL_REASONS = new Set(['replaced', 'removed', 'left']);

// Thrown for server errors that end the session; code is the protocol's (401, 403, 429…).
export class RoomError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// The unverified claims of a JWT, to know the grants before asking for a camera; the server
// checks the token for real.
export function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

// VP8 first: browsers' best-supported simulcast codec. The others stay, reordered only.
function preferVP8(transceiver) {
  if (!transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities('video');
  if (!caps) return;
  const rank = (c) => (/vp8$/i.test(c.mimeType) ? 0 : 1);
  const codecs = [...caps.codecs].sort((a, b) => rank(a) - rank(b));
  try { transceiver.setCodecPreferences(codecs); } catch { /* keep the browser's order */ }
}

export class Room extends EventTarget {
  // url: ws(s)://host/rtc; token: the JWT; name: display name (optional).
  constructor({ url, token, name = '' }) {
    super();
    this.url = url;
    this.token = token;
    this.name = name;
    this.claims = claimsOf(token) || {};
    this.reset();
    this.state = 'idle';   // idle, connecting, joined, reconnecting, unauthorized, left
    this.leftReason = '';
    this.errors = [];      // {code, message, at} from the server and from our own steps
    this.localStream = null;
    this.muted = { camera: false, microphone: false };
    this.attempt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.rtt = null;
  }

  // reset forgets everything of the current session (not the local media).
  reset() {
    this.ws = null;
    this.self = null;                // {id, name}
    this.roomName = '';
    this.iceServers = [];
    this.participants = new Map();   // id -> {id, name, tracks: Map id -> track}
    this.remote = new Map();         // track id -> MediaStreamTrack
    this.layers = new Map();         // track id -> {quality, width, height}
    this.quality = new Map();        // track id -> what we asked for
    this.speakers = [];              // [{participant_id, level}], loudest first
    this.pub = null;
    this.sub = null;
    this.subMids = {};               // mid -> track id on the subscribe connection
    this.ownTracks = new Map();      // mid -> our track id on the server
    this.pubCandidates = null;       // buffered until publish_offer is sent
    this.subChain = Promise.resolve();
    this.pubChain = Promise.resolve();
  }

  get canPublish() { return !this.claims.grants || this.claims.grants.publish !== false; }
  get isAdmin() { return !!(this.claims.grants && this.claims.grants.admin); }

  changed(what, detail = {}) { this.dispatchEvent(new CustomEvent('change', { detail: { what, ...detail } })); }

  error(code, message) {
    const e = { code, message: String(message), at: Date.now() };
    this.errors.push(e);
    if (this.errors.length > 50) this.errors.shift();
    this.changed('error', e);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.changed('state');
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  // ---- connection ------------------------------------------------------------------------

  connect() {
    clearTimeout(this.retryTimer);
    this.close();
    this.leftReason = '';
    this.setState(this.attempt ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.error(0, `cannot open ${this.url}: ${err.message}`);
      return this.retry();
    }
    this.ws = ws;
    let heard = false;
    ws.onopen = () => {
      const join = { type: 'join', token: this.token };
      if (this.name) join.name = this.name;
      ws.send(JSON.stringify(join));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      heard = true;
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return this.error(0, 'the server sent a message that is not JSON'); }
      try { this.handle(msg); } catch (err) { this.error(0, `${msg.type}: ${err.message}`); }
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.close();
      if (this.state === 'unauthorized' || FINAL_REASONS.has(this.leftReason)) {
        if (this.state !== 'unauthorized') this.setState('left');
        return;
      }
      if (!heard) this.error(0, 'edged is not reachable');
      else if (this.leftReason) this.error(0, `the server ended the session (${this.leftReason})`);
      else if (ev.code !== 1000) this.error(0, `connection closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`);
      this.retry();
    };
  }

  // retry reconnects after a growing, jittered delay.
  retry() {
    const delay = Math.min(RETRY_MIN_MS * 2 ** this.attempt, RETRY_MAX_MS) * (0.75 + Math.random() * 0.5);
    this.attempt++;
    this.retryAt = Date.now() + delay;
    this.setState('reconnecting');
    this.changed('retry', { delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // close drops the session's socket and connections; the local media stays.
  close() {
    clearInterval(this.pingTimer);
    const { ws, pub, sub } = this;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
    }
    for (const pc of [pub, sub]) {
      if (!pc) continue;
      pc.onicecandidate = pc.onconnectionstatechange = null;
      pc.close();
    }
    const hadSomething = ws || this.participants.size;
    this.reset();
    if (hadSomething) this.changed('participants');
  }

  // leave ends the session for good (the page offers to join again).
  leave() {
    clearTimeout(this.retryTimer);
    this.send({ type: 'leave' });
    this.leftReason = 'left';
    this.close();
    this.setState('left');
  }

  stop() {
    this.leave();
    if (this.localStream) this.localStream.getTracks().forEach((t) => t.stop());
    this.localStream = null;
  }

  // ---- messages --------------------------------------------------------------------------

  handle(m) {
    switch (m.type) {
      case 'joined': return this.joined(m);
      case 'participant_joined': {
        const p = m.participant;
        this.participants.set(p.id, { id: p.id, name: p.name, tracks: new Map((p.tracks || []).map((t) => [t.id, t])) });
        return this.changed('joined', { participant: p.id, name: p.name });
      }
      case 'participant_left': {
        const p = this.participants.get(m.participant_id);
        this.participants.delete(m.participant_id);
        return this.changed('left', { participant: m.participant_id, name: p ? p.name : m.participant_id, reason: m.reason });
      }
      case 'track_published': {
        const p = this.participant(m.participant_id);
        p.tracks.set(m.track.id, m.track);
        return this.changed('participants');
      }
      case 'track_unpublished': {
        const p = this.participants.get(m.participant_id);
        if (p) p.tracks.delete(m.track_id);
        this.layers.delete(m.track_id);
        return this.changed('participants');
      }
      case 'track_muted': {
        const p = this.participants.get(m.participant_id);
        const t = p && p.tracks.get(m.track_id);
        if (t) t.muted = m.muted;
        return this.changed('participants');
      }
      case 'publish_answer': return this.publishAnswer(m);
      case 'subscribe_offer': return this.subscribeOffer(m);
      case 'candidate': return this.remoteCandidate(m);
      case 'layer':
        this.layers.set(m.track_id, { quality: m.quality, width: m.width, height: m.height });
        return this.changed('layer', { track: m.track_id });
      case 'publish_layers': return this.publishLayers(m);
      case 'speakers':
        this.speakers = m.speakers || [];
        return this.changed('speakers');
      case 'pong':
        if (typeof m.t === 'number') this.rtt = Date.now() - m.t;
        return;
      case 'error': return this.serverError(m);
      case 'leave':
        this.leftReason = m.reason || '';
        return this.changed('leave', { reason: this.leftReason });
      default:
        return this.error(0, `unknown message from the server: ${m.type}`);
    }
  }

  participant(id) {
    let p = this.participants.get(id);
    if (!p) {
      p = { id, name: id, tracks: new Map() };
      this.participants.set(id, p);
    }
    return p;
  }

  joined(m) {
    this.attempt = 0;
    this.self = m.participant;
    this.roomName = m.room;
    this.iceServers = m.ice_servers || [];
    for (const p of m.participants || []) {
      this.participants.set(p.id, { id: p.id, name: p.name, tracks: new Map((p.tracks || []).map((t) => [t.id, t])) });
    }
    this.sub = this.peer('subscribe');
    this.sub.onconnectionstatechange = () => this.changed('connection');
    this.pingTimer = setInterval(() => this.send({ type: 'ping', t: Date.now() }), PING_EVERY_MS);
    this.setState('joined');
    this.changed('participants');
    if (this.localStream) this.publish();
  }

  serverError(m) {
    this.error(m.code, m.message);
    if (this.state === 'joined') {
      if (m.code === 403 && /publish/.test(m.message)) {
        this.viewOnly = 'your token does not allow publishing';
        this.changed('publish');
      }
      return;
    }
    // An error before joined ends the attempt; the socket closes next.
    if (m.code === 401) {
      this.setState('unauthorized');
    } else if (m.code === 403 || m.code === 400) {
      this.leftReason = 'removed'; // retrying cannot help
      this.fatal = m.message;
    }
  }

  peer(target) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (c && !c.candidate) return; // an end-of-generation marker
      const msg = { type: 'candidate', target, candidate: c ? c.toJSON() : null };
      if (target === 'publish' && this.pubCandidates) this.pubCandidates.push(msg);
      else this.send(msg);
    };
    return pc;
  }

  remoteCandidate(m) {
    const pc = m.target === 'publish' ? this.pub : this.sub;
    if (!pc || !m.candidate) return;
    const chain = m.target === 'publish' ? 'pubChain' : 'subChain';
    this[chain] = this[chain].then(() => pc.addIceCandidate(m.candidate))
      .catch((err) => this.error(0, `${m.target} candidate: ${err.message}`));
  }

  // ---- subscribing -----------------------------------------------------------------------

  subscribeOffer(m) {
    const pc = this.sub;
    this.subChain = this.subChain.then(async () => {
      if (pc !== this.sub) return;
      await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      if (pc !== this.sub) return;
      this.send({ type: 'subscribe_answer', sdp: pc.localDescription.sdp });
      this.subMids = m.tracks || {};
      this.bindRemote();
    }).catch((err) => this.error(0, `subscribe offer: ${err.message}`));
  }

  // bindRemote maps the subscribe connection's receivers to the tracks the offer named.
  bindRemote() {
    const remote = new Map();
    for (const tr of this.sub.getTransceivers()) {
      const id = tr.mid != null && this.subMids[tr.mid];
      if (id && tr.receiver.track) remote.set(id, tr.receiver.track);
    }
    this.remote = remote;
    this.changed('media');
  }

  trackInfo(id) {
    for (const p of this.participants.values()) {
      const t = p.tracks.get(id);
      if (t) return { participant: p.id, track: t };
    }
    return null;
  }

  // setQuality asks for a layer of a remote track: low, medium, high or auto.
  setQuality(trackId, quality) {
    this.quality.set(trackId, quality);
    this.send({ type: 'subscription', track_id: trackId, subscribed: true, quality });
  }

  // ---- publishing ------------------------------------------------------------------------

  // setLocalStream publishes stream now, or as soon as we are joined.
  setLocalStream(stream) {
    this.localStream = stream;
    this.changed('local');
    if (this.state === 'joined') this.publish();
  }

  publish() {
    const stream = this.localStream;
    if (!stream || this.pub || !this.canPublish || this.viewOnly) return;
    const pc = this.peer('publish');
    this.pub = pc;
    this.pubCandidates = [];
    pc.onconnectionstatechange = () => this.changed('connection');
    const declared = [];
    const video = stream.getVideoTracks()[0];
    const audio = stream.getAudioTracks()[0];
    if (video) {
      const { width = 0, height = 0 } = video.getSettings();
      const simulcast = Math.max(width, height) >= 640 && Math.min(width, height) >= 360;
      const init = { direction: 'sendonly', streams: [stream] };
      if (simulcast) {
        init.sendEncodings = [
          { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
          { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
          { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
        ];
      }
      const tr = pc.addTransceiver(video, init);
      preferVP8(tr);
      declared.push({ tr, source: 'camera', simulcast });
      video.enabled = !this.muted.camera;
    }
    if (audio) {
      declared.push({ tr: pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] }), source: 'microphone' });
      audio.enabled = !this.muted.microphone;
    }
    this.pubChain = this.pubChain.then(async () => {
      await pc.setLocalDescription(await pc.createOffer());
      if (pc !== this.pub) return;
      const tracks = declared.map(({ tr, source, simulcast }) => {
        const t = { mid: tr.mid, source };
        if (simulcast) t.simulcast = true;
        return t;
      });
      this.pubTransceivers = new Map(declared.map(({ tr, source }) => [tr.mid, { tr, source }]));
      this.send({ type: 'publish_offer', sdp: pc.localDescription.sdp, tracks });
      const queued = this.pubCandidates || [];
      this.pubCandidates = null;
      queued.forEach((msg) => this.send(msg));
    }).catch((err) => this.error(0, `publish: ${err.message}`));
    this.changed('publish');
  }

  publishAnswer(m) {
    const pc = this.pub;
    if (!pc) return;
    this.pubChain = this.pubChain.then(async () => {
      await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
      // The server names our tracks TR_<identity>_<mid> unless the answer says otherwise.
      for (const mid of this.pubTransceivers.keys()) {
        this.ownTracks.set(mid, (m.tracks && m.tracks[mid]) || `TR_${this.self.id}_${mid}`);
      }
      // Mutes set before the tracks existed on the server.
      for (const source of ['camera', 'microphone']) if (this.muted[source]) this.sendMute(source);
      this.changed('publish');
    }).catch((err) => this.error(0, `publish answer: ${err.message}`));
  }

  ownTrack(source) {
    for (const [mid, { tr, source: s }] of this.pubTransceivers || []) {
      if (s === source) return { id: this.ownTracks.get(mid), tr };
    }
    return null;
  }

  // setMuted mutes our camera or microphone: the track sends black or silence at once, and
  // the server stops forwarding it and tells the others.
  setMuted(source, muted) {
    this.muted[source] = muted;
    const kind = source === 'camera' ? 'video' : 'audio';
    if (this.localStream) this.localStream.getTracks().filter((t) => t.kind === kind).forEach((t) => { t.enabled = !muted; });
    this.sendMute(source);
    this.changed('local');
  }

  sendMute(source) {
    const own = this.ownTrack(source);
    if (own && own.id) this.send({ type: 'mute', track_id: own.id, muted: this.muted[source] });
  }

  // publishLayers pauses the simulcast layers nobody receives (dynacast). Changes are applied
  // in order, after the answer that names our tracks.
  publishLayers(m) {
    this.pubChain = this.pubChain.then(async () => {
      const own = [...this.ownTracks].find(([, id]) => id === m.track_id);
      const entry = own && this.pubTransceivers.get(own[0]);
      if (!entry) return;
      const sender = entry.tr.sender;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) return;
      const active = new Set(m.active || []);
      let change = false;
      for (const enc of params.encodings) {
        const on = enc.rid ? active.has(enc.rid) : active.size > 0;
        if (enc.active !== on) { enc.active = on; change = true; }
      }
      this.activeLayers = [...active];
      if (change) await sender.setParameters(params);
      this.changed('publish');
    }).catch((err) => this.error(0, `publish layers: ${err.message}`));
  }

  // ---- stats for the page and tests ------------------------------------------------------

  // stats is one entry per received track: who sent it and how it is doing.
  async stats() {
    const pc = this.sub;
    if (!pc) return [];
    const byMediaTrack = new Map();
    for (const [id, t] of this.remote) byMediaTrack.set(t.id, id);
    const report = await pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const id = byMediaTrack.get(s.trackIdentifier);
      if (!id) return;
      const info = this.trackInfo(id);
      out.push({
        participant: info ? info.participant : '', track: id, kind: s.kind,
        framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
        framesPerSecond: s.framesPerSecond || 0,
        packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0, bytesReceived: s.bytesReceived || 0,
        keyFramesDecoded: s.keyFramesDecoded || 0, freezeCount: s.freezeCount || 0, pliCount: s.pliCount || 0,
        nackCount: s.nackCount || 0, audioLevel: s.audioLevel, codec: (report.get(s.codecId) || {}).mimeType || '',
        timestamp: s.timestamp,
      });
    });
    return out;
  }

  // publishStats is one entry per sent stream (per simulcast layer).
  async publishStats() {
    const pc = this.pub;
    if (!pc) return [];
    const report = await pc.getStats();
    const out = [];
    report.forEach((s) => {
      if (s.type !== 'outbound-rtp') return;
      out.push({
        kind: s.kind, rid: s.rid || '', active: s.active !== false,
        framesEncoded: s.framesEncoded || 0, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
        framesPerSecond: s.framesPerSecond || 0, packetsSent: s.packetsSent || 0, bytesSent: s.bytesSent || 0,
        qualityLimitationReason: s.qualityLimitationReason || '', codec: (report.get(s.codecId) || {}).mimeType || '',
        audioLevel: (report.get(s.mediaSourceId) || {}).audioLevel,
      });
    });
    return out;
  }
}
