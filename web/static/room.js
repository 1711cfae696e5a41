// Listener page: plays the co-host, shows captions, and measures what arrives (window.voxroomStats)
// so tests and OBS can see it. Where to play from comes from GET /rooms/ROOM/playback: a Janus
// VideoRoom the room publishes into (spoken to over Janus' HTTP API, below), or voxroom's own WHEP
// (POST an SDP offer, get the answer), which is also the fallback when Janus cannot be reached.
// Captions always come from voxroom.
"use strict";
const roomId = decodeURIComponent(location.pathname.split("/").pop());
const params = new URLSearchParams(location.search);
const grant = params.get("grant") || sessionStorage.getItem("voxroom-token") || "";
const $ = (id) => document.getElementById(id);
const stats = (window.voxroomStats = {
  state: "idle", samplesReceived: 0, concealedSamples: 0, packetsLost: 0,
  loudFrames: 0, meterFrames: 0, peakRms: 0, captions: [], error: null,
  source: null, janusError: null, rejoins: 0,
});
let pc = null, session = null, janus = null, meterTimer = null, audioCtx = null;

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
  if (isError) stats.error = text;
}

function waitForIce(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000); // use whatever was gathered
  });
}

function startMeter(stream) {
  audioCtx = new AudioContext();
  const source = audioCtx.createMediaStreamSource(stream);
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  meterTimer = setInterval(async () => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    stats.meterFrames += 1;
    stats.peakRms = Math.max(stats.peakRms, rms);
    if (rms > 0.01) stats.loudFrames += 1;
    $("level").style.width = Math.min(100, rms * 400) + "%";
    if (pc) {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") {
          stats.samplesReceived = s.totalSamplesReceived || 0;
          stats.concealedSamples = s.concealedSamples || 0;
          stats.packetsLost = s.packetsLost || 0;
        }
      });
    }
  }, 50);
}

// Reconnecting: after a dropped caption socket or peer (a server restart, a network blip) the page
// tries again after 1, 2, 4 … 15 s; a link the server refuses (expired, revoked, wrong room) is said
// plainly on the page and not retried.
const BACKOFF_S = [1, 2, 4, 8, 15];
let wanted = false, whepTries = 0, whepTimer = null, refused = false;
const backoff = (tries) => BACKOFF_S[Math.min(tries, BACKOFF_S.length - 1)] * 1000;

function showProblem(text) {
  setStatus(text, true);
  const box = $("problem");
  if (box) { box.textContent = text; box.hidden = false; }
}

function clearProblem() {
  stats.error = null;
  const box = $("problem");
  if (box) box.hidden = true;
}

// `code`: the server's stable error code (link_revoked when the host rotated the room's links).
function refuse(reason, code) {
  refused = true;
  wanted = false;
  clearTimeout(whepTimer);
  dropPeer();  // a revoked link stops playing too, whether from voxroom or from an SFU
  const expired = /expired/i.test(reason);
  const revoked = code === "link_revoked" || /^link_revoked/.test(reason);
  showProblem(revoked
    ? "The host replaced this room's links: this one no longer works. Ask the host for the new link."
    : expired
    ? `This link has expired (${reason}). Ask the host for a new one.`
    : `This link was refused: ${reason}. Ask the host for a new one.`);
  stats.state = "refused";
  stats.refusedCode = revoked ? "link_revoked" : (code || null);
  $("join").disabled = true;
  $("leave").disabled = true;
}

function rejoinLater() {
  if (!wanted || refused) return;
  clearTimeout(whepTimer);
  const wait = backoff(whepTries++);
  setStatus(`reconnecting in ${Math.round(wait / 1000)} s…`);
  whepTimer = setTimeout(connect, wait);
}

function dropPeer() {
  if (pc) { pc.onconnectionstatechange = null; pc.close(); }
  clearInterval(meterTimer);
  if (audioCtx) audioCtx.close();
  pc = session = audioCtx = null;
  leaveJanus();
}

// A receiving peer (WHEP or Janus): plays and meters what arrives; a dropped connection reconnects,
// asking again where to play from (Janus back up, or still WHEP).
function newPeer() {
  const peer = (pc = new RTCPeerConnection());
  peer.ontrack = (event) => {
    const stream = event.streams[0] || new MediaStream([event.track]);
    $("player").srcObject = stream;
    $("player").play().catch(() => setStatus("click anywhere to allow sound"));
    startMeter(stream);
  };
  peer.onconnectionstatechange = () => {
    if (peer !== pc) return;
    stats.state = peer.connectionState;
    if (peer.connectionState === "connected") { whepTries = 0; clearProblem(); setStatus("listening"); }
    if (peer.connectionState === "failed" || peer.connectionState === "disconnected") {
      stats.rejoins += 1;
      rejoinLater();
    }
  };
  return peer;
}

async function playbackPlan() {
  const whep = { kind: "whep", url: `/rooms/${encodeURIComponent(roomId)}/whep` };
  try {
    const res = await fetch(`/rooms/${encodeURIComponent(roomId)}/playback`, {
      headers: { Authorization: `Bearer ${grant}` },
    });
    return res.ok ? await res.json() : whep;
  } catch (e) {
    return whep;
  }
}

// -- Janus VideoRoom over Janus' HTTP API: session, videoroom handle, subscribe to the co-host's feed.
function janusTx() { return Math.random().toString(36).slice(2, 14); }

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

async function joinJanus(plan) {
  const base = plan.janus.replace(/\/$/, "");
  const created = await janusCall(base, { janus: "create" });
  janus = { sessionUrl: `${base}/${created.data.id}` };
  const attached = await janusCall(janus.sessionUrl, { janus: "attach", plugin: "janus.plugin.videoroom" });
  const handleUrl = `${janus.sessionUrl}/${attached.data.id}`;
  const listed = await janusCall(handleUrl, { janus: "message", body: { request: "listparticipants", room: plan.room } });
  const feeds = (listed.plugindata.data.participants || []).filter((p) => p.publisher);
  if (!feeds.length) throw new Error("nobody publishes in the Janus room");
  await janusCall(handleUrl, { janus: "message", body: {
    request: "join", ptype: "subscriber", room: plan.room, streams: [{ feed: feeds[0].id }] } });
  let offer = null;
  for (let i = 0; i < 5 && !offer; i++) {
    const event = await janusEvent(janus.sessionUrl);
    if (event.jsep) offer = event.jsep;
  }
  if (!offer) throw new Error("Janus sent no offer");
  const peer = newPeer();
  await peer.setRemoteDescription(offer);
  await peer.setLocalDescription(await peer.createAnswer());
  await waitForIce(peer);
  await janusCall(handleUrl, { janus: "message", body: { request: "start" },
                               jsep: { type: "answer", sdp: peer.localDescription.sdp } });
  const mine = janus;
  (async () => { // long polls keep the Janus session alive while we listen
    while (janus === mine) { try { await janusEvent(mine.sessionUrl); } catch (e) { await new Promise((r) => setTimeout(r, 1000)); } }
  })();
  await connectedWithin(peer, 10000);
}

async function leaveJanus() {
  const old = janus;
  janus = null;
  if (old) await janusCall(old.sessionUrl, { janus: "destroy" }).catch(() => {});
}


async function join() {
  wanted = true;
  whepTries = 0;
  $("join").disabled = true;
  await connect();
}

async function connect() {
  if (!wanted || refused) return;
  clearTimeout(whepTimer);  // this attempt replaces any that was scheduled
  dropPeer();
  stats.state = "connecting";
  setStatus("connecting…");
  const plan = await playbackPlan();
  if (!wanted || refused) return;
  if (plan.kind === "janus") {
    try {
      await joinJanus(plan);
      stats.source = "janus";
      stats.joins = (stats.joins || 0) + 1;
      $("leave").disabled = false;
      return;
    } catch (e) {
      stats.janusError = String(e && e.message ? e.message : e);
      dropPeer();  // and play from voxroom itself
      stats.state = "connecting";
    }
  }
  stats.source = "whep";
  const whepUrl = plan.kind === "whep" ? plan.url : plan.fallback.url;
  const peer = newPeer();
  peer.addTransceiver("audio", { direction: "recvonly" });
  await peer.setLocalDescription(await peer.createOffer());
  await waitForIce(peer);
  if (peer !== pc) return;  // a newer attempt took over while this one gathered candidates
  let res;
  try {
    res = await fetch(whepUrl, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${grant}` },
      body: peer.localDescription.sdp,
    });
  } catch (err) {
    showProblem("cannot reach the server; trying again");
    rejoinLater();
    return;
  }
  if (res.status !== 201) {
    const body = await res.json().catch(() => ({}));
    const reason = body.error || `HTTP ${res.status}`;
    if ([401, 403, 404].includes(res.status)) refuse(reason, body.code);
    else { showProblem(`could not join: ${reason}; trying again`); rejoinLater(); }
    return;
  }
  if (peer !== pc) return;
  session = res.headers.get("Location");
  await peer.setRemoteDescription({ type: "answer", sdp: await res.text() });
  stats.joins = (stats.joins || 0) + 1;
  $("leave").disabled = false;
}

async function leave() {
  wanted = false;
  clearTimeout(whepTimer);
  if (session) {
    await fetch(session, { method: "DELETE", headers: { Authorization: `Bearer ${grant}` } }).catch(() => {});
  }
  dropPeer();
  stats.state = "left";
  setStatus("left the room");
  $("join").disabled = false;
  $("leave").disabled = true;
}

function showCaption(event) {
  const box = $("captions");
  if (box.querySelector(".muted")) box.innerHTML = "";
  let p = document.getElementById("cap-" + event.id);
  if (!p) {
    p = document.createElement("p");
    p.id = "cap-" + event.id;
    box.prepend(p);
  }
  p.textContent = event.text;
  p.className = event.type === "speech.started" ? "speaking" : "";
}

function showPiece(event) {
  const box = $("captions");
  if (box.querySelector(".muted")) box.innerHTML = "";
  let p = document.getElementById("cap-" + event.id);
  if (!p) {
    p = document.createElement("p");
    p.id = "cap-" + event.id;
    box.prepend(p);
  }
  p.className = "speaking";
  p.textContent = event.text && event.text.includes(event.piece) ? event.text : event.piece;
}

let captionTries = 0, captionDropped = false;
function followCaptions() {
  if (refused) return;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/rooms/${encodeURIComponent(roomId)}/events?token=${encodeURIComponent(grant)}`);
  stats.captionSocket = ws;
  ws.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    if (event.type === "room") {
      $("title").textContent = event.name;
      captionTries = 0;
      stats.captionConnects = (stats.captionConnects || 0) + 1;
      if (captionDropped && wanted) { whepTries = 0; connect(); } // the server came back: so must the audio
      captionDropped = false;
    }
    if (event.type === "speech.started" || event.type === "speech.ended") {
      stats.captions.push({ type: event.type, text: event.text });
      if (event.text) showCaption(event);
    }
    if (event.type === "speech.piece") {
      stats.captions.push({ type: event.type, text: event.piece });
      showPiece(event);
    }
  };
  ws.onclose = (e) => {
    if (e.code >= 4000) { refuse(e.reason || "room unavailable"); return; }
    captionDropped = true;
    setTimeout(followCaptions, backoff(captionTries++));
  };
}

const chatForm = $("chat-form");
if (chatForm) {
  chatForm.onsubmit = async (e) => {
    e.preventDefault();
    const text = $("chat-text").value.trim();
    if (!text) return;
    const res = await fetch(`/api/rooms/${encodeURIComponent(roomId)}/chat`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${grant}` },
      body: JSON.stringify({ type: "message", user: $("chat-user").value.trim() || "listener", text }),
    });
    const body = await res.json().catch(() => ({}));
    $("chat-status").textContent = res.ok ? (body.outcome === "queued" ? "sent" : body.outcome) : body.error;
    if (res.ok) $("chat-text").value = "";
  };
}

$("join").onclick = join;
$("leave").onclick = leave;
followCaptions();
// OBS browser source: /obs/ROOM (the overlay page) or ?autojoin=1 join without a click.
if (params.get("autojoin") === "1" || window.voxroomAutojoin) join();
