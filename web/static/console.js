// Host console: the API token arrives in the URL fragment (never sent to the server in a URL),
// is kept for this tab, and goes in the Authorization header of every call.
"use strict";
const $ = (id) => document.getElementById(id);
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("voxroom-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname);
}
const token = sessionStorage.getItem("voxroom-token");
let current = null, events = null;
const queue = new Map();

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

function renderQueue() {
  const list = $("queue");
  list.innerHTML = "";
  if (!queue.size) list.innerHTML = '<li class="muted">empty</li>';
  for (const [id, item] of queue) {
    const li = document.createElement("li");
    li.textContent = `${item.state === "speaking" ? "▶ " : ""}${item.text}`;
    li.className = item.state === "speaking" ? "speaking" : "";
    const skip = document.createElement("button");
    skip.textContent = "skip";
    skip.style.marginLeft = ".5rem";
    skip.onclick = () => api(`/api/rooms/${current.id}/speeches/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(alert);
    li.append(skip);
    list.append(li);
  }
}

function follow(room) {
  if (events) events.close();
  queue.clear();
  for (const s of room.queue || []) queue.set(s.id, s);
  renderQueue();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  events = new WebSocket(`${proto}://${location.host}/rooms/${room.id}/events?token=${encodeURIComponent(token)}`);
  events.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    if (e.type === "speech.queued") queue.set(e.id, { text: e.text, state: "queued" });
    if (e.type === "speech.started") queue.set(e.id, { text: e.text, state: "speaking" });
    if (e.type === "speech.ended") {
      queue.delete(e.id);
      const p = document.createElement("p");
      p.textContent = `${e.state === "done" ? "✓" : "✗ (" + e.state + ")"} ${e.text}`;
      $("captions").prepend(p);
    }
    renderQueue();
  };
}

function select(room) {
  current = room;
  $("room-panel").hidden = false;
  $("room-title").textContent = room.name;
  const url = new URL(room.listen_url || `/r/${room.id}`, location.href).href;
  $("listen-link").href = url;
  $("listen-link").textContent = url;
  const overlay = url.replace(`/r/${room.id}`, `/obs/${room.id}`);
  $("overlay-link").href = overlay;
  $("overlay-link").textContent = overlay;
  follow(room);
}

async function loadRooms() {
  const { rooms } = await api("/api/rooms");
  const list = $("rooms");
  list.innerHTML = rooms.length ? "" : '<li class="muted">no rooms yet</li>';
  for (const room of rooms) {
    const li = document.createElement("li");
    const open = document.createElement("button");
    open.textContent = `${room.name} (${room.listeners} listening)`;
    open.onclick = async () => {
      const { grant } = await api(`/api/rooms/${room.id}/grants`, { method: "POST", body: JSON.stringify({ role: "listener" }) });
      select({ ...room, listen_url: `/r/${room.id}?grant=${grant}` });
    };
    li.append(open);
    list.append(li);
  }
}

$("create-room").onsubmit = async (e) => {
  e.preventDefault();
  const room = await api("/api/rooms", { method: "POST", body: JSON.stringify({ name: $("room-name").value }) });
  await loadRooms();
  select(room);
};

$("say-form").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("say-text").value.trim();
  if (!text || !current) return;
  try {
    const r = await api(`/api/rooms/${current.id}/say`, { method: "POST", body: JSON.stringify({ text }) });
    queue.set(r.id, { text, state: r.state });
    renderQueue();
    $("say-text").value = "";
    $("say-status").textContent = "queued";
  } catch (err) {
    $("say-status").textContent = err.message;
  }
};

(async () => {
  if (!token) { $("auth-error").hidden = false; return; }
  try {
    const voices = await api("/api/voices");
    if (voices.advice) { $("voice-notice").hidden = false; $("voice-notice").textContent = voices.advice; }
    await loadRooms();
  } catch (err) {
    $("auth-error").hidden = false;
    $("auth-error").textContent = `Cannot use this console: ${err.message}`;
  }
})();
