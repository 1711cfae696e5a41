// Listener page and OBS overlay: plays the co-host, shows captions, takes chat, and measures what
// arrives (window.voxroomStats) so tests and OBS can see it. Playing, the event socket and
// reconnecting are voxroom-client.js's; this file is the page around them.
"use strict";
const roomId = decodeURIComponent(location.pathname.split("/").pop());
const params = new URLSearchParams(location.search);
const grant = params.get("grant") || sessionStorage.getItem("voxroom-token") || "";
const $ = (id) => document.getElementById(id);
const stats = (window.voxroomStats = { captions: [], error: null });

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
  if (isError) stats.error = text;
}

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

// A link the server refuses (expired, replaced by a rotation, wrong room) is said plainly on the page.
function refused(reason, code) {
  const expired = /expired/i.test(reason);
  const revoked = code === "link_revoked" || /^link_revoked/.test(reason);
  showProblem(revoked
    ? "The host replaced this room's links: this one no longer works. Ask the host for the new link."
    : expired
    ? `This link has expired (${reason}). Ask the host for a new one.`
    : `This link was refused: ${reason}. Ask the host for a new one.`);
  $("join").disabled = true;
  $("leave").disabled = true;
}

const player = new VoxroomClient.Player({ room: roomId, token: grant, audio: $("player"), stats, on: {
  status: (text, isError) => (isError ? showProblem(text) : setStatus(text)),
  connected: clearProblem,
  refused,
  level: (rms) => { $("level").style.width = Math.min(100, rms * 400) + "%"; },
} });

async function join() {
  $("join").disabled = true;
  await player.start();
  if (!player.refused) $("leave").disabled = false;
}

async function leave() {
  await player.stop();
  setStatus("left the room");
  $("join").disabled = false;
  $("leave").disabled = true;
}

function captionLine(id) {
  const box = $("captions");
  if (box.querySelector(".muted")) box.innerHTML = "";
  let p = document.getElementById("cap-" + id);
  if (!p) {
    p = document.createElement("p");
    p.id = "cap-" + id;
    box.prepend(p);
  }
  return p;
}

function onEvent(event) {
  if (event.type === "room") $("title").textContent = event.name;
  if (event.type === "speech.started") player.captionStarted(event.id);
  if (event.type === "speech.started" || event.type === "speech.ended") {
    stats.captions.push({ type: event.type, text: event.text });
    if (event.text) {
      const p = captionLine(event.id);
      p.textContent = event.text;
      p.className = event.type === "speech.started" ? "speaking" : "";
    }
  }
  if (event.type === "speech.piece") {
    stats.captions.push({ type: event.type, text: event.piece });
    const p = captionLine(event.id);
    p.className = "speaking";
    p.textContent = event.text && event.text.includes(event.piece) ? event.text : event.piece;
  }
}

VoxroomClient.followEvents({ room: roomId, token: grant, stats, on: {
  event: onEvent,
  refused: (reason) => { if (!player.refused) player.refuse(reason); },  // the reason starts with its code
  reconnected: () => player.reconnectNow(), // the server came back: so must the audio
} });

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
// OBS browser source: /obs/ROOM (the overlay page) or ?autojoin=1 join without a click.
if (params.get("autojoin") === "1" || window.voxroomAutojoin) join();
