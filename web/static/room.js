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

function newPeer() {
  pc = new RTCPeerConnection();
  pc.ontrack = (event) => {
    const stream = event.streams[0] || new MediaStream([event.track]);
    $("player").srcObject = stream;
    $("player").play().catch(() => setStatus("click anywhere to allow sound"));
    startMeter(stream);
  };
  const mine = pc;
  pc.onconnectionstatechange = () => {
    if (pc !== mine) return; // an abandoned attempt
    stats.state = pc.connectionState;
    if (pc.connectionState === "connected") setStatus("listening");
    if (stats.source === "janus" && ["disconnected", "failed"].includes(pc.connectionState)) {
      // Janus went away (restart, network): ask again where to play from, WHEP if it is still down
      setTimeout(() => { if (pc === mine && mine.connectionState !== "connected") rejoin(); }, 3000);
      return;
    }
    if (pc.connectionState === "failed") setStatus("connection failed", true);
  };
  return pc;
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
  newPeer();
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await waitForIce(pc);
  await janusCall(handleUrl, { janus: "message", body: { request: "start" },
                               jsep: { type: "answer", sdp: pc.localDescription.sdp } });
  const mine = janus;
  (async () => { // long polls keep the Janus session alive while we listen
    while (janus === mine) { try { await janusEvent(mine.sessionUrl); } catch (e) { await new Promise((r) => setTimeout(r, 1000)); } }
  })();
  await connectedWithin(pc, 10000);
}

async function leaveJanus() {
  const old = janus;
  janus = null;
  if (old) await janusCall(old.sessionUrl, { janus: "destroy" }).catch(() => {});
}

async function join() {
  $("join").disabled = true;
  stats.state = "connecting";
  setStatus("connecting…");
  const plan = await playbackPlan();
  if (plan.kind === "janus") {
    try {
      await joinJanus(plan);
      stats.source = "janus";
      $("leave").disabled = false;
      return;
    } catch (e) {
      stats.janusError = String(e && e.message ? e.message : e);
      if (pc) pc.close();
      pc = null;
      clearInterval(meterTimer);
      if (audioCtx) audioCtx.close();
      audioCtx = null;
      await leaveJanus();
      stats.state = "connecting";
    }
  }
  await joinWhep(plan.kind === "whep" ? plan.url : plan.fallback.url);
}

async function joinWhep(url) {
  stats.source = "whep";
  newPeer();
  pc.addTransceiver("audio", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${grant}` },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) {
    const body = await res.json().catch(() => ({}));
    setStatus(`could not join: ${body.error || res.status}`, true);
    $("join").disabled = false;
    return;
  }
  session = res.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
  $("leave").disabled = false;
}

async function rejoin() {
  stats.rejoins += 1;
  await leaveJanus();
  if (pc) pc.close();
  pc = null;
  clearInterval(meterTimer);
  if (audioCtx) audioCtx.close();
  audioCtx = null;
  stats.state = "connecting";
  setStatus("reconnecting…");
  await join();
}

async function leave() {
  if (session) {
    await fetch(session, { method: "DELETE", headers: { Authorization: `Bearer ${grant}` } }).catch(() => {});
  }
  await leaveJanus();
  if (pc) pc.close();
  clearInterval(meterTimer);
  if (audioCtx) audioCtx.close();
  pc = session = null;
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

function followCaptions() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/rooms/${encodeURIComponent(roomId)}/events?token=${encodeURIComponent(grant)}`);
  ws.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    if (event.type === "room") $("title").textContent = event.name;
    if (event.type === "speech.started" || event.type === "speech.ended") {
      stats.captions.push({ type: event.type, text: event.text });
      if (event.text) showCaption(event);
    }
    if (event.type === "speech.piece") {
      stats.captions.push({ type: event.type, text: event.piece });
      showPiece(event);
    }
  };
  ws.onclose = (e) => { if (e.code >= 4000) setStatus(`room unavailable: ${e.reason}`, true); else setTimeout(followCaptions, 2000); };
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
