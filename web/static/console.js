// Host console: rooms, lines to say, the co-host's settings, chat queue and metrics, over the REST
// API and each room's event stream ($, token and api() come from common.js).
"use strict";
let current = null, events = null;
const queue = new Map();

function renderQueue() {
  const list = $("queue");
  list.innerHTML = "";
  if (!queue.size) list.innerHTML = `<li class="muted">${t("empty", "空")}</li>`;
  for (const [id, item] of queue) {
    const li = document.createElement("li");
    li.textContent = `${item.state === "speaking" ? "▶ " : ""}${item.text}`;
    li.className = item.state === "speaking" ? "speaking" : "";
    const skip = document.createElement("button");
    skip.textContent = t("skip", "跳过");
    skip.style.marginLeft = ".5rem";
    skip.onclick = () => api(`/api/rooms/${current.id}/speeches/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(alert);
    li.append(skip);
    list.append(li);
  }
}

const showVoiceNote = () => { $("voice-lang-note").hidden = $("voice").value !== "stock"; };
$("voice").addEventListener("change", showVoiceNote);

let templates = {};
function showTemplate() {
  const lang = $("template-lang").value, kind = $("template-kind").value;
  $("template").value = ((templates[lang] || {})[kind]) || "";
}
$("template-lang").onchange = showTemplate;
$("template-kind").onchange = showTemplate;

const ms = (s) => (s === null || s === undefined ? "–" : `${Math.round(s * 1000)} ms`);

async function loadCohost(room) {
  const state = await api(`/api/rooms/${room.id}/cohost`);
  const st = state.settings;
  $("cohost-panel").hidden = false;
  $("cohost-mode").textContent = st.mode === "llm"
    ? t("Answers chat with the LLM endpoint set under Replies.", "用“回复”中设置的 LLM 回答聊天。")
    : t("Read-aloud mode: reads chosen messages and thanks gifters (set an LLM under Replies for answers).",
      "朗读模式：读出选中的消息并感谢送礼的观众（在“回复”中设置 LLM 即可用它回答）。");
  $("persona-box").hidden = st.mode !== "llm";
  $("persona").value = st.persona || "";
  $("policy").value = st.policy;
  $("voice").value = st.voice || "stock";
  showVoiceNote();
  $("idle").value = st.idle_after || "";
  $("blocked").value = st.blocked_words.join(", ");
  templates = st.templates || {};
  showTemplate();
  renderChatQueue(state.queue);
  showPaidRules(st.paid_rules);
  $("moderated").innerHTML = "";
  for (const m of state.moderation || []) addModerated(m);
}

function renderChatQueue(items) {
  const list = $("chat-queue");
  list.innerHTML = items && items.length ? "" : `<li class="muted">${t("empty", "空")}</li>`;
  for (const item of items || []) {
    const li = document.createElement("li");
    li.textContent = `[${item.kind}] ${item.user}: ${item.text || item.gift || ""}`;
    for (const [action, label] of [["pin", t("pin", "置顶")], ["skip", t("skip", "跳过")]]) {
      const b = document.createElement("button");
      b.textContent = label;
      b.style.marginLeft = ".4rem";
      b.onclick = () => api(`/api/rooms/${current.id}/queue/${encodeURIComponent(item.id)}/${action}`, { method: "POST" })
        .then(refreshChatQueue).catch((e) => alert(e.message));
      li.append(b);
    }
    list.append(li);
  }
}

async function refreshChatQueue() {
  if (current) renderChatQueue((await api(`/api/rooms/${current.id}/cohost`)).queue);
}

function addModerated(m) {
  const li = document.createElement("li");
  li.textContent = `${m.direction || ""} ${m.reason || ""}: ${m.text || ""}`;
  $("moderated").prepend(li);
}

function addReplyMetrics(e) {
  const tr = document.createElement("tr");
  for (const v of [`${e.outcome}: ${e.text || ""}`.slice(0, 60), ms(e.queue_wait), ms(e.llm_first_token), ms(e.first_audio), ms(e.total)]) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.append(td);
  }
  $("reply-metrics").querySelector("tr").after(tr);
}

function follow(room) {
  if (events) events.close();
  queue.clear();
  for (const s of room.queue || []) queue.set(s.id, s);
  renderQueue();
  events = VoxroomClient.followEvents({ room: room.id, token, on: { event: (e) => {
    if (e.type === "speech.queued") queue.set(e.id, { text: e.text, state: "queued" });
    if (e.type === "speech.started") queue.set(e.id, { text: e.text, state: "speaking" });
    if (e.type === "cohost.state") $("cohost-state").textContent = `(${e.state})`;
    if (e.type === "cohost.event" || e.type === "cohost.reply_started" || e.type === "cohost.dropped") refreshChatQueue();
    if (e.type === "cohost.reply_finished") addReplyMetrics(e);
    if (e.type === "cohost.moderated") addModerated(e);
    if (e.type === "speech.ended") {
      queue.delete(e.id);
      const p = document.createElement("p");
      p.textContent = `${e.state === "done" ? "✓" : "✗ (" + e.state + ")"} ${e.text}`;
      if (e.error) {  // e.g. the stock voice refusing Chinese or Japanese: say why nothing was heard
        const why = document.createElement("span");
        why.className = "error";
        why.textContent = ` — ${e.error}`;
        p.append(why);
      }
      $("captions").prepend(p);
    }
    renderQueue();
  } } });
}

async function select(room) {
  current = room;
  $("room-panel").hidden = false;
  $("room-title").textContent = room.name;
  $("listener-count").textContent = room.listeners || 0;
  stopListening();
  follow(room);
  loadCohost(room).catch((e) => alert(e.message));
  loadConnectors(room).catch((e) => { $("connector-status").textContent = e.message; });
  loadRoomLlm(room).catch((e) => { $("room-llm-status").textContent = e.message; });  // console-llm.js
  await loadLinks(room).catch((e) => { $("links-status").textContent = e.message; });  // console-links.js
  loadSfu(room).catch((e) => { $("sfu-status").textContent = e.message; });  // console-sfu.js
}

$("save-cohost").onclick = async () => {
  const body = {
    policy: $("policy").value,
    voice: $("voice").value,
    idle_after: $("idle").value ? Number($("idle").value) : null,
    blocked_words: $("blocked").value.split(",").map((w) => w.trim()).filter(Boolean),
  };
  if (!$("persona-box").hidden) body.persona = $("persona").value;
  if ($("template").value.trim()) {
    body.templates = { [$("template-lang").value]: { [$("template-kind").value]: $("template").value.trim() } };
  }
  try {
    await api(`/api/rooms/${current.id}/cohost`, { method: "PATCH", body: JSON.stringify(body) });
    $("cohost-saved").textContent = t("saved", "已保存");
  } catch (err) {
    $("cohost-saved").textContent = err.message;
  }
};

$("talking").onclick = () => setTalking(!talking);  // console-shortcuts.js (also the T key)
$("skip-current").onclick = skipCurrent;
$("clear-chat").onclick = () => api(`/api/rooms/${current.id}/queue`, { method: "DELETE" }).then(refreshChatQueue);

let micPc = null;
$("mic").onclick = async () => {
  if (micPc) { micPc.close(); micPc = null; $("mic").textContent = t("Use my microphone for turn-taking", "用我的麦克风判断轮流说话"); return; }
  const { grant } = await api(`/api/rooms/${current.id}/grants`, { method: "POST", body: JSON.stringify({ role: "host" }) });
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  micPc = new RTCPeerConnection();
  for (const track of stream.getAudioTracks()) micPc.addTrack(track, stream);
  await micPc.setLocalDescription(await micPc.createOffer());
  await VoxroomClient.waitForIce(micPc);
  const res = await fetch(`/rooms/${current.id}/whip`, { method: "POST", body: micPc.localDescription.sdp,
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${grant}` } });
  if (res.status !== 201) { alert(`${t("microphone refused", "麦克风被拒绝")}: ${res.status}`); micPc.close(); micPc = null; return; }
  await micPc.setRemoteDescription({ type: "answer", sdp: await res.text() });
  $("mic").textContent = t("Stop using my microphone", "停止使用我的麦克风");
};

// The room list, kept fresh: listener counts change as people come and go, so the list is read
// again every few seconds (and at once after a change made here).
const ROOM_POLL_MS = 2000;
const roomButtons = new Map();

function roomLabel(room) {
  return `${room.name} (${room.listeners} ${t("listening", "人在听")})`;
}

async function loadRooms() {
  const { rooms } = await api("/api/rooms");
  const ids = rooms.map((r) => r.id).join(",");
  if (ids !== [...roomButtons.keys()].join(",")) {
    const list = $("rooms");
    list.innerHTML = rooms.length ? "" : `<li class="muted">${t("no rooms yet", "还没有直播间")}</li>`;
    roomButtons.clear();
    for (const room of rooms) {
      const li = document.createElement("li");
      li.dataset.room = room.id;
      const open = document.createElement("button");
      open.className = "open-room";
      open.onclick = () => select(room);
      const del = document.createElement("button");
      del.className = "danger delete-room";
      del.textContent = t("Delete", "删除");
      del.style.marginLeft = ".4rem";
      del.onclick = () => deleteRoom(room);
      li.append(open, del);
      list.append(li);
      roomButtons.set(room.id, open);
    }
  }
  for (const room of rooms) {
    roomButtons.get(room.id).textContent = roomLabel(room);
    if (current && current.id === room.id) $("listener-count").textContent = room.listeners;
  }
}

async function deleteRoom(room) {
  if (!confirm(t(`Delete the room "${room.name}"? Its links stop working.`, `删除直播间“${room.name}”？它的链接将失效。`))) return;
  try {
    await api(`/api/rooms/${room.id}`, { method: "DELETE" });
  } catch (err) {
    $("create-status").textContent = err.message;
    return;
  }
  if (current && current.id === room.id) {
    stopListening();
    if (events) events.close();
    current = events = null;
    $("room-panel").hidden = $("cohost-panel").hidden = $("room-llm-panel").hidden = $("sfu-panel").hidden = true;
  }
  await loadRooms();
}

$("create-room").onsubmit = async (e) => {
  e.preventDefault();
  $("create-status").textContent = "";
  let room;
  try {
    room = await api("/api/rooms", { method: "POST", body: JSON.stringify({ name: $("room-name").value }) });
  } catch (err) {
    $("create-status").textContent = err.status === 429
      ? t(`You already have the most rooms an account may have (${err.message.match(/\d+/) || 20}). Delete one to make a new one.`,
        `你的直播间数量已达上限（${err.message.match(/\d+/) || 20} 个）。删除一个后才能新建。`)
      : err.message;
    return;
  }
  await loadRooms();
  select(room);
};

// "Listen here": the console's monitor, off until asked for, plays the room like a listener page
// (voxroom-client.js: Janus or WHEP, reconnecting) at the volume the host sets, and measures what
// arrives (window.voxroomStats), so the host hears the co-host without opening another tab.
const stats = (window.voxroomStats = { listening: false, state: "idle" });
let monitor = null;
const monitorVolume = () => Number($("monitor-volume").value) / 100;

function stopListening() {
  if (monitor) monitor.stop();
  monitor = null;
  stats.listening = false;
  stats.state = "idle";
  $("listen-here").textContent = t("Listen here", "在这里收听");
  $("listen-status").textContent = "";
}

$("listen-here").onclick = () => {
  if (monitor) { stopListening(); return; }
  monitor = new VoxroomClient.Player({ room: current.id, token, audio: $("listen-player"), stats, on: {
    status: (text, isError) => { $("listen-status").textContent = isError ? `${t("cannot listen", "无法收听")}: ${text}` : text; },
    connected: () => { $("listen-status").textContent = t("listening", "收听中"); },
    refused: (reason) => { stopListening(); $("listen-status").textContent = `${t("cannot listen", "无法收听")}: ${reason}`; },
  } });
  monitor.setVolume(monitorVolume());
  stats.listening = true;
  $("listen-here").textContent = t("Stop listening", "停止收听");
  monitor.start();
};

$("monitor-volume").value = localStorage.getItem("voxroom-monitor-volume") || "80";
$("monitor-volume").oninput = () => {
  localStorage.setItem("voxroom-monitor-volume", $("monitor-volume").value);
  if (monitor) monitor.setVolume(monitorVolume());
};

for (const button of document.querySelectorAll("button.copy")) {
  button.onclick = async () => {
    const link = $(button.dataset.copy).href;
    try {
      await navigator.clipboard.writeText(link);
      button.textContent = t("Copied", "已复制");
    } catch (err) {
      window.prompt(t("Copy this link:", "复制此链接："), link);
    }
    setTimeout(() => { button.textContent = t("Copy", "复制"); }, 1500);
  };
}

$("say-form").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("say-text").value.trim();
  if (!text || !current) return;
  try {
    const r = await api(`/api/rooms/${current.id}/say`, { method: "POST", body: JSON.stringify({ text, voice: $("voice").value }) });
    queue.set(r.id, { text, state: r.state });
    renderQueue();
    $("say-text").value = "";
    $("say-status").textContent = t("queued", "已排队");
  } catch (err) {
    $("say-status").textContent = err.message;
  }
};

// The account's LLM endpoint: the key is write-only (the server says only whether one is stored).
function showLlm(view) {
  $("llm-panel").hidden = false;
  $("llm-url").value = view.base_url || "";
  $("llm-model").value = view.model || "";
  $("llm-key").value = "";
  $("llm-key").placeholder = view.has_api_key ? t("saved; leave empty to keep", "已保存；留空则保留") : t("none", "无");
  $("llm-mode").textContent = view.mode === "llm"
    ? t(`Your rooms answer chat with ${view.model} at ${view.base_url}`, `你的直播间用 ${view.base_url} 上的 ${view.model} 回答聊天`)
      + (view.source === "server" ? t(" (set on the server).", "（服务器上设置）。") : ".")
    : t("Read-aloud mode: no LLM set. Set one here and every room answers with it.", "朗读模式：未设置 LLM。在这里设置后，所有直播间都会用它回答。");
}

function llmBody() {
  const body = { base_url: $("llm-url").value.trim() || null, model: $("llm-model").value.trim() };
  if ($("llm-key").value) body.api_key = $("llm-key").value;
  return body;
}

async function saveLlm(body) {
  try {
    showLlm(await api("/api/llm", { method: "PUT", body: JSON.stringify(body) }));
    $("llm-status").textContent = t("saved", "已保存");
    if (current) loadCohost(current).catch(() => {});
  } catch (err) {
    $("llm-status").textContent = err.message;
  }
}

$("llm-save").onclick = () => saveLlm(llmBody());
$("llm-clear").onclick = () => saveLlm({ base_url: null });
$("llm-test").onclick = async () => {
  $("llm-status").textContent = t("testing…", "测试中…");
  try {
    const body = $("llm-url").value.trim() ? llmBody() : {};
    const r = await api("/api/llm/test", { method: "POST", body: JSON.stringify(body) });
    $("llm-status").textContent = r.ok
      ? t(`works: first token in ${r.first_token_ms} ms`, `可用：首字用时 ${r.first_token_ms} 毫秒`) + (r.error ? ` (${r.error})` : "")
      : `${t("does not work", "不可用")}: ${r.error}`;
  } catch (err) {
    $("llm-status").textContent = err.message;
  }
};

(async () => {
  if (!token) { $("auth-error").hidden = false; return; }
  $("create-room").hidden = false;
  try {
    const voices = await api("/api/voices");
    if (voices.advice) { $("voice-notice").hidden = false; $("voice-notice").textContent = cannotCloneNotice(voices.advice); }
    $("voice").innerHTML = "";
    for (const v of voices.voices) {
      const option = document.createElement("option");
      option.value = v.id;
      option.textContent = v.id === "stock" ? t(v.name, "Joe（内置声音，美式英语）")
        : `${v.name}${v.can_clone ? "" : t(" (stock voice until cloning is set up)", "（在配置克隆之前由内置声音朗读）")}`;
      $("voice").append(option);
    }
    await loadRooms();
    setInterval(() => loadRooms().catch(() => {}), ROOM_POLL_MS);
    showLlm(await api("/api/llm"));
  } catch (err) {
    $("auth-error").hidden = false;
    $("auth-error").textContent = `${t("Cannot use this console", "无法使用此控制台")}: ${err.message}`;
  }
})();

// -- chat connectors and paid-event rules (REST: /api/rooms/ROOM/connectors, cohost paid_rules) ------
// The one secret each platform's set-up asks for in the console (docs/connectors.md has the rest).
const SECRET_FIELD = { youtube: "api_key", bilibili: "cookie", twitch: "token", tiktok: null };

function showPaidRules(rules) {
  if (!rules) return;
  $("paid-full").value = rules.read_in_full_usd;
  $("paid-window").value = rules.batch_window_s;
}

function connectorLabel(c) {
  const st = c.status || {};
  let state = st.state || "?";
  if (state === "reconnecting" && st.next_retry_at) state += ` (${t("next try", "下次重试")} ${new Date(st.next_retry_at * 1000).toLocaleTimeString()})`;
  if (state === "error" && st.message) state += `: ${st.message}`;
  const counters = st.counters || {};
  return `${c.platform} · ${c.channel} — ${state}, ${counters.submitted || 0} ${t("events", "条")}`;
}

async function loadConnectors(room) {
  $("connectors-panel").hidden = false;
  const { connectors } = await api(`/api/rooms/${room.id}/connectors`);
  const list = $("connectors");
  list.innerHTML = "";
  if (!connectors.length) list.innerHTML = `<li class="muted">${t("none", "无")}</li>`;
  for (const c of connectors) {
    const li = document.createElement("li");
    li.className = "connector";
    li.dataset.state = (c.status || {}).state || "";
    li.textContent = connectorLabel(c);
    const remove = document.createElement("button");
    remove.textContent = t("remove", "移除");
    remove.style.marginLeft = ".5rem";
    remove.onclick = async () => {
      await api(`/api/rooms/${room.id}/connectors/${encodeURIComponent(c.id)}`, { method: "DELETE" }).catch(alert);
      loadConnectors(room);
    };
    li.append(remove);
    list.append(li);
  }
}

// Only Twitch asks for an account name (with its token); the other platforms hide the field.
function showConnectorFields() {
  $("connector-nick").hidden = $("connector-platform").value !== "twitch";
}
$("connector-platform").onchange = showConnectorFields;
showConnectorFields();

$("connector-form").onsubmit = async (e) => {
  e.preventDefault();
  if (!current) return;
  const platform = $("connector-platform").value;
  const body = { platform, channel: $("connector-channel").value.trim() };
  const secret = $("connector-secret").value;
  if (secret && SECRET_FIELD[platform]) body[SECRET_FIELD[platform]] = secret;
  const nick = $("connector-nick").value.trim();
  if (platform === "twitch" && nick) body.nick = nick;  // a Twitch token belongs to an account
  if (window.voxroomConnectorUrl) body.url = window.voxroomConnectorUrl;  // tests and relays
  try {
    await api(`/api/rooms/${current.id}/connectors`, { method: "POST", body: JSON.stringify(body) });
    $("connector-status").textContent = t("connecting…", "连接中…");
    $("connector-channel").value = $("connector-secret").value = $("connector-nick").value = "";
  } catch (err) {
    $("connector-status").textContent = err.message;
  }
  loadConnectors(current);
};

$("paid-save").onclick = async () => {
  if (!current) return;
  try {
    const st = await api(`/api/rooms/${current.id}/cohost`, { method: "PATCH", body: JSON.stringify({ paid_rules: {
      read_in_full_usd: Number($("paid-full").value), batch_window_s: Number($("paid-window").value) } }) });
    showPaidRules(st.paid_rules);
    $("paid-status").textContent = t("saved", "已保存");
  } catch (err) {
    $("paid-status").textContent = err.message;
  }
};

setInterval(() => { if (current) loadConnectors(current).catch(() => {}); }, 2000);
