// The pages' one client for listening to a room, used by the listener page and the OBS overlay
// (room.js) and by the console's monitor (console.js):
// - where to play from: GET /rooms/ROOM/playback names a Janus VideoRoom the room publishes into
//   (spoken to over Janus' HTTP API) or voxroom's own WHEP (POST an SDP offer, get the answer), which
//   is also the fallback when Janus cannot be reached; a page on the fallback tries Janus again every
//   JANUS_RETRY_MS and moves back to it, without a gap, once Janus plays;
// - a level meter and receive stats in a `stats` object (the pages expose it as window.voxroomStats),
//   with the caption offset: from a speech's `speech.started` event to its first loud audio here;
// - the room's event socket (captions, queue, co-host state);
// - reconnecting after 1, 2, 4 … 15 s; a link the server refuses is reported, not retried.
"use strict";
const VoxroomClient = (() => {
  const BACKOFF_S = [1, 2, 4, 8, 15];
  const backoff = (tries) => BACKOFF_S[Math.min(tries, BACKOFF_S.length - 1)] * 1000;
  const JANUS_RETRY_MS = 5000;
  const LOUD_RMS = 0.01;
  const METER_MS = 50;

  function waitForIce(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") resolve(); });
      setTimeout(resolve, 2000); // use whatever was gathered
    });
  }

  const roomPath = (room) => encodeURIComponent(room);

  // -- Janus VideoRoom over Janus' HTTP API: session, videoroom handle, subscribe to the co-host's feed.
  const janusTx = () => Math.random().toString(36).slice(2, 14);

  async function janusCall(url, body) {
    const res = await fetch(url, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, transaction: janusTx() }), signal: AbortSignal.timeout(5000),
    });
    const answer = await res.json();
    const pluginError = answer.plugindata && answer.plugindata.data && answer.plugindata.data.error;
    if (answer.janus === "error" || pluginError) throw new Error((answer.error && answer.error.reason) || pluginError);
    return answer;
  }

  async function janusEvent(sessionUrl) {
    const res = await fetch(`${sessionUrl}?maxev=1&rid=${Date.now()}`, { signal: AbortSignal.timeout(40000) });
    const answer = await res.json();
    return Array.isArray(answer) ? answer[0] : answer;
  }

  function connectedWithin(peer, ms) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no connection to Janus")), ms);
      const check = () => {
        if (peer.connectionState === "connected") { clearTimeout(timer); resolve(); }
        if (peer.connectionState === "failed") { clearTimeout(timer); reject(new Error("connection to Janus failed")); }
      };
      peer.addEventListener("connectionstatechange", check);
      check();
    });
  }

  // Janus says the subscribed feed is gone: its publisher left (an "updated" subscription whose stream
  // is no longer active: the room published anew or stopped), or our PeerConnection was hung up.
  function feedEnded(event) {
    const data = (event && event.plugindata && event.plugindata.data) || {};
    return Boolean(event) && (event.janus === "hangup" || event.janus === "detached"
      || (data.videoroom === "updated" && (data.streams || []).some((s) => s.active === false)));
  }

  // A link the server refuses (expired, revoked, wrong room): not worth retrying.
  // `code`: the server's stable error code (link_revoked when the host rotated the room's links).
  class Refused extends Error {
    constructor(message, code) { super(message); this.code = code || null; }
  }

  // Plays a room into an <audio> element. `on` holds the page's callbacks: status(text, isError),
  // refused(reason), level(rms), connected().
  class Player {
    constructor({ room, token, audio, stats, on = {} }) {
      Object.assign(this, { room, token, audio, stats, on });
      Object.assign(stats, { state: "idle", samplesReceived: 0, concealedSamples: 0, packetsLost: 0,
        loudFrames: 0, meterFrames: 0, peakRms: 0, source: null, janusError: null, rejoins: 0, joins: 0,
        janusReturns: 0, captionOffsetMs: null, captionOffsets: [] });
      this.wanted = false;
      this.refused = false;
      this.tries = 0;
      this.timer = null;
      this.janusTimer = null;
      this.current = null; // { pc, kind, stream, location (WHEP), janus (session URL) }
      this.meterTimer = null;
      this.audioCtx = null;
      this.pendingCaption = null;
      this.wasLoud = false;
      this.peerConfig = {};
    }

    status(text, isError) { if (this.on.status) this.on.status(text, isError); }

    start() {
      this.wanted = true;
      this.tries = 0;
      return this.connect();
    }

    async stop() {
      const closing = this.halt();
      this.stats.state = "left";
      await closing;
    }

    // Stop wanting to play: no retry, silence at once, then end the session (stop and refuse).
    halt() {
      this.wanted = false;
      clearTimeout(this.timer);
      clearTimeout(this.janusTimer);
      const old = this.current;
      this.current = null;
      this.stopMeter();
      this.audio.srcObject = null;
      return this.close(old);
    }

    // The server came back (its event socket reconnected): so must the audio from its WHEP, at once
    // (playing from Janus goes on; a new feed there is noticed by itself).
    reconnectNow() {
      if (!this.wanted) return;
      if (this.current && this.current.kind === "janus" && this.current.pc.connectionState === "connected") return;
      this.tries = 0;
      this.connect();
    }

    setVolume(volume) {
      this.audio.volume = volume;
      this.audio.muted = volume === 0;
      this.stats.volume = volume;
    }

    // A caption event for a speech (speech.started) arrived: its audio is measured against it.
    captionStarted(id) {
      this.pendingCaption = { id, at: performance.now(), quietSeen: !this.wasLoud };
    }

    // A refused link stops playing too, whether from voxroom or from an SFU.
    refuse(reason, code) {
      this.refused = true;
      this.halt();
      const revoked = code === "link_revoked" || /^link_revoked/.test(reason);
      this.stats.state = "refused";
      this.stats.refusedCode = revoked ? "link_revoked" : (code || null);
      if (this.on.refused) this.on.refused(reason, this.stats.refusedCode);
    }

    later() {
      if (!this.wanted || this.refused) return;
      clearTimeout(this.timer);
      const wait = backoff(this.tries++);
      this.status(`reconnecting in ${Math.round(wait / 1000)} s…`);
      this.timer = setTimeout(() => this.connect(), wait);
    }

    // Where to play from, and the STUN/TURN servers (and policy) the server gives pages for their peers.
    async playbackPlan() {
      let plan = { kind: "whep", url: `/rooms/${roomPath(this.room)}/whep` };
      try {
        const res = await fetch(`/rooms/${roomPath(this.room)}/playback`, { headers: { Authorization: `Bearer ${this.token}` } });
        if (res.ok) plan = await res.json();
      } catch (e) { /* the server is unreachable: WHEP says so */ }
      this.peerConfig = { iceServers: plan.ice_servers || [] };
      if (plan.ice_transport_policy) this.peerConfig.iceTransportPolicy = plan.ice_transport_policy;
      return plan;
    }

    // A receiving peer: what arrives plays (once it is the current one); a dropped connection of the
    // current one reconnects, asking again where to play from.
    newSession(kind) {
      const session = { kind, pc: new RTCPeerConnection(this.peerConfig), stream: null };
      session.pc.ontrack = (event) => {
        session.stream = event.streams[0] || new MediaStream([event.track]);
        if (session === this.current) this.attach(session);
      };
      session.pc.onconnectionstatechange = () => {
        if (session !== this.current) return;
        const state = session.pc.connectionState;
        this.stats.state = state;
        if (state === "connected") {
          this.tries = 0;
          this.status("listening");
          if (this.on.connected) this.on.connected();
        }
        if (state === "failed" || state === "disconnected") {
          this.stats.rejoins += 1;
          this.later();
        }
      };
      return session;
    }

    // Make `session` the one that plays; the one before it is closed.
    use(session) {
      const old = this.current;
      this.current = session;
      this.stats.source = session.kind;
      this.stats.joins += 1;
      if (session.stream) this.attach(session);
      if (session.pc.connectionState === "connected") session.pc.onconnectionstatechange();
      if (old) this.close(old);
    }

    async close(session) {
      if (!session) return;
      session.pc.onconnectionstatechange = null;
      session.pc.close();
      if (session.location) {
        await fetch(session.location, { method: "DELETE", headers: { Authorization: `Bearer ${this.token}` } }).catch(() => {});
      }
      if (session.janus) await janusCall(session.janus, { janus: "destroy" }).catch(() => {});
      session.janus = null;
    }

    async connect() {
      if (!this.wanted || this.refused) return;
      clearTimeout(this.timer);  // this attempt replaces any that was scheduled
      clearTimeout(this.janusTimer);
      const old = this.current;
      this.current = null;
      this.close(old);
      this.stats.state = "connecting";
      this.status("connecting…");
      const plan = await this.playbackPlan();
      if (!this.wanted || this.refused) return;
      if (plan.kind === "janus") {
        this.janusPlanned = true;
        try {
          const session = await this.joinJanus(plan);
          if (!this.wanted || this.current) { this.close(session); return; }
          this.stats.janusError = null;
          this.use(session);
          return;
        } catch (e) {
          this.stats.janusError = String(e && e.message ? e.message : e);
        }
      }
      try {
        await this.joinWhep(plan.kind === "whep" ? plan : plan.fallback);
      } catch (e) {
        if (e instanceof Refused) { this.refuse(e.message, e.code); return; }
        this.status(e.message, true);
        this.later();
        return;
      }
      if (this.janusPlanned) this.retryJanusLater();
    }

    async joinWhep(plan) {
      const session = this.newSession("whep");
      const pc = session.pc;
      pc.addTransceiver("audio", { direction: "recvonly" });
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIce(pc);
      if (!this.wanted || this.current) { pc.close(); return; }  // a newer attempt took over meanwhile
      let res;
      try {
        res = await fetch(plan.url, { method: "POST", body: pc.localDescription.sdp,
          headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${this.token}` } });
      } catch (err) {
        pc.close();
        throw new Error("cannot reach the server; trying again");
      }
      if (res.status !== 201) {
        pc.close();
        const body = await res.json().catch(() => ({}));
        const reason = body.error || `HTTP ${res.status}`;
        if ([401, 403, 404].includes(res.status)) throw new Refused(reason, body.code);
        throw new Error(`could not join: ${reason}; trying again`);
      }
      session.location = res.headers.get("Location");
      if (!this.wanted || this.current) { this.close(session); return; }
      this.use(session);
      await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    }

    async joinJanus(plan) {
      const base = plan.janus.replace(/\/$/, "");
      const created = await janusCall(base, { janus: "create" });
      const session = this.newSession("janus");
      session.janus = `${base}/${created.data.id}`;
      try {
        const attached = await janusCall(session.janus, { janus: "attach", plugin: "janus.plugin.videoroom" });
        const handleUrl = `${session.janus}/${attached.data.id}`;
        const listed = await janusCall(handleUrl, { janus: "message", body: { request: "listparticipants", room: plan.room } });
        const feeds = (listed.plugindata.data.participants || []).filter((p) => p.publisher);
        if (!feeds.length) throw new Error("nobody publishes in the Janus room");
        await janusCall(handleUrl, { janus: "message", body: {
          request: "join", ptype: "subscriber", room: plan.room, streams: [{ feed: feeds[0].id }] } });
        let offer = null;
        for (let i = 0; i < 5 && !offer; i++) {
          const event = await janusEvent(session.janus);
          if (event.jsep) offer = event.jsep;
        }
        if (!offer) throw new Error("Janus sent no offer");
        const pc = session.pc;
        await pc.setRemoteDescription(offer);
        await pc.setLocalDescription(await pc.createAnswer());
        await waitForIce(pc);
        await janusCall(handleUrl, { janus: "message", body: { request: "start" },
                                     jsep: { type: "answer", sdp: pc.localDescription.sdp } });
        (async () => { // long polls keep the Janus session alive while it is in use, and say when the feed ends
          while (session.janus) {
            let event;
            try { event = await janusEvent(session.janus); } catch (e) { await new Promise((r) => setTimeout(r, 1000)); continue; }
            if (session.janus && session === this.current && feedEnded(event)) {
              this.stats.rejoins += 1;
              this.connect(); // the room re-published (a new feed) or stopped publishing: ask where to play from
            }
          }
        })();
        await connectedWithin(pc, 10000);
        return session;
      } catch (e) {
        this.close(session);
        throw e;
      }
    }

    // On the WHEP fallback of a room that publishes to Janus: try Janus again now and then; once it
    // plays, it replaces WHEP (WHEP keeps playing until then).
    retryJanusLater() {
      clearTimeout(this.janusTimer);
      this.janusTimer = setTimeout(async () => {
        if (!this.wanted || !this.current || this.current.kind !== "whep") return;
        const plan = await this.playbackPlan();
        if (plan.kind === "janus") {
          try {
            const session = await this.joinJanus(plan);
            if (!this.wanted || !this.current || this.current.kind !== "whep") { this.close(session); return; }
            this.stats.janusError = null;
            this.stats.janusReturns += 1;
            this.use(session);
            return;
          } catch (e) {
            this.stats.janusError = String(e && e.message ? e.message : e);
          }
        }
        this.retryJanusLater();
      }, JANUS_RETRY_MS);
    }

    // -- the level meter (an AnalyserNode: Chrome's audioLevel stays 0 for a muted element)
    stopMeter() {
      clearInterval(this.meterTimer);
      if (this.audioCtx) this.audioCtx.close();
      this.audioCtx = null;
    }

    attach(session) {
      this.audio.srcObject = session.stream;
      this.audio.play().catch(() => this.status("click anywhere to allow sound"));
      this.stopMeter();
      Object.assign(this.stats, { samplesReceived: 0, concealedSamples: 0, packetsLost: 0 }); // this peer's from now on
      const ctx = (this.audioCtx = new AudioContext());
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 2048;
      ctx.createMediaStreamSource(session.stream).connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      this.meterTimer = setInterval(async () => {
        analyser.getFloatTimeDomainData(buf);
        let sum = 0;
        for (const v of buf) sum += v * v;
        this.measured(Math.sqrt(sum / buf.length));
        const report = await session.pc.getStats();
        if (session !== this.current) return; // replaced while its stats were read
        report.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "audio") {
            this.stats.samplesReceived = s.totalSamplesReceived || 0;
            this.stats.concealedSamples = s.concealedSamples || 0;
            this.stats.packetsLost = s.packetsLost || 0;
          }
          if (s.type === "transport" && s.selectedCandidatePairId) { // host, srflx or relay (TURN)
            const pair = report.get(s.selectedCandidatePairId);
            const local = pair && report.get(pair.localCandidateId);
            this.stats.candidateType = local ? local.candidateType : null;
          }
        });
      }, METER_MS);
    }

    measured(rms) {
      const stats = this.stats;
      const loud = rms > LOUD_RMS;
      stats.meterFrames += 1;
      stats.peakRms = Math.max(stats.peakRms, rms);
      if (loud) stats.loudFrames += 1;
      const pending = this.pendingCaption;
      if (pending && !loud) pending.quietSeen = true;
      if (pending && loud && pending.quietSeen) { // the speech's first loud frame after its caption
        const ms = Math.round(performance.now() - pending.at);
        stats.captionOffsetMs = ms;
        stats.captionOffsets.push({ id: pending.id, ms, source: stats.source });
        this.pendingCaption = null;
      }
      this.wasLoud = loud;
      if (this.on.level) this.on.level(rms);
    }
  }

  // The room's event socket, reopened after a drop (1, 2, 4 … 15 s). on: event(e), refused(reason),
  // reconnected() (it came back after a drop). Returns { close() }.
  function followEvents({ room, token, stats, on = {} }) {
    let tries = 0, dropped = false, closed = false, ws = null;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    function open() {
      if (closed) return;
      ws = new WebSocket(`${proto}://${location.host}/rooms/${roomPath(room)}/events?token=${encodeURIComponent(token)}`);
      if (stats) stats.captionSocket = ws;
      ws.onmessage = (msg) => {
        const event = JSON.parse(msg.data);
        if (event.type === "room") {
          tries = 0;
          if (stats) stats.captionConnects = (stats.captionConnects || 0) + 1;
          if (dropped && on.reconnected) on.reconnected();
          dropped = false;
        }
        if (on.event) on.event(event);
      };
      ws.onclose = (e) => {
        if (closed) return;
        if (e.code >= 4000) { if (on.refused) on.refused(e.reason || "room unavailable"); return; }
        dropped = true;
        setTimeout(open, backoff(tries++));
      };
    }
    open();
    return { close() { closed = true; if (ws) ws.close(); } };
  }

  return { Player, followEvents, waitForIce };
})();
