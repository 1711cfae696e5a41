// Voice enrollment: read a script while the microphone streams 16 kHz PCM16 to the server, which
// answers with a level meter, live advice and, at the end, a quality report and the new voice.
// Or upload a file. Then list, play, rename, re-clip and delete your voices.
"use strict";
// What the page saw, for people debugging a take and for the browser test.
const stats = (window.voxroomEnroll = {
  state: "idle", chunksSent: 0, bytesSent: 0, levels: 0, lastLevel: null, advice: [], result: null, errors: [],
});

function fail(where, err) {
  const message = err && err.message ? err.message : String(err);
  stats.errors.push(`${where}: ${message}`);
  return message;
}

// Advice and the report come in the reader's language (zh or en), whichever script they read.
const UI_LANG = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";

// -- the script --------------------------------------------------------------------------------
let sentences = [];
let current = -1;

async function loadScript() {
  const script = await api(`/api/enroll/scripts?lang=${$("lang").value}`);
  sentences = script.sentences;
  const list = $("script");
  list.innerHTML = "";
  for (const text of sentences) {
    const li = document.createElement("li");
    li.textContent = text;
    list.append(li);
  }
  showSentence(-1);
}

function showSentence(index) {
  current = index;
  [...$("script").children].forEach((li, i) => {
    li.className = i === index ? "reading" : i < index ? "done" : "";
  });
  const li = $("script").children[index];
  if (li) li.scrollIntoView({ block: "nearest" });
  $("next").textContent = index >= sentences.length - 1 ? "Last sentence" : "Next sentence";
}

// -- recording -----------------------------------------------------------------------------------
let ws = null, audioCtx = null, micStream = null, node = null, startedAt = 0, clockTimer = null;

function setRecording(on) {
  $("record").disabled = on;
  $("lang").disabled = on;
  for (const id of ["next", "finish", "cancel"]) $(id).disabled = !on;
}

function stopMicrophone() {
  if (node) { node.port.onmessage = null; node.disconnect(); node = null; }
  if (micStream) { micStream.getTracks().forEach((t) => t.stop()); micStream = null; }
  if (audioCtx) { audioCtx.close(); audioCtx = null; }
  clearInterval(clockTimer);
  setRecording(false);
}

function addAdvice(msg) {
  stats.advice.push({ code: msg.code, message: msg.message, time: msg.time, at: performance.now() });
  const li = document.createElement("li");
  li.textContent = `${msg.time.toFixed(1)} s — ${msg.message}`;
  li.dataset.code = msg.code;
  $("advice").prepend(li);
  while ($("advice").children.length > 6) $("advice").lastChild.remove();
}

function showMeter(peak) {
  const db = peak > 0 ? 20 * Math.log10(peak) : -60;
  const width = Math.max(0, Math.min(1, (db + 60) / 60));
  $("meter").style.width = `${Math.round(width * 100)}%`;
  $("meter").style.background = db > -1 ? "#d33" : db < -40 ? "#e0b000" : "#3bb273";
}

async function startRecording() {
  if (!$("consent").checked) { $("record-status").textContent = "Tick the consent box first: only your own voice may be cloned."; return; }
  $("record-status").textContent = "Asking for the microphone…";
  $("advice").innerHTML = "";
  try {
    // Raw microphone: echo cancellation, noise suppression and auto gain would hide the very
    // problems the coach listens for and colour the voice that gets cloned.
    micStream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    audioCtx = new AudioContext({ sampleRate: 16000 }); // the browser resamples the microphone for us
    await audioCtx.audioWorklet.addModule("/static/enroll-worklet.js");
  } catch (err) {
    stopMicrophone();
    $("record-status").textContent = `No microphone: ${fail("microphone", err)}`;
    return;
  }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/api/enroll/live?token=${encodeURIComponent(token)}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (event) => onServerMessage(JSON.parse(event.data));
  ws.onclose = () => {
    if (stats.state === "recording" || stats.state === "checking") {
      stopMicrophone();
      stats.state = "idle";
      $("record-status").textContent = "The connection to the server closed; nothing was kept. Please record again.";
    }
    ws = null;
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; }).catch((err) => fail("websocket", err));
  if (!ws || ws.readyState !== WebSocket.OPEN) { stopMicrophone(); return; }
  ws.send(JSON.stringify({ type: "start", lang: $("lang").value, name: $("name").value, consent: true, ui: UI_LANG }));
  ws.send(JSON.stringify({ type: "sentence", index: 0 }));
  showSentence(0);
  node = new AudioWorkletNode(audioCtx, "pcm16-chunker");
  node.port.onmessage = (event) => {
    showMeter(event.data.peak);
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(event.data.pcm);
      stats.chunksSent += 1;
      stats.bytesSent += event.data.pcm.byteLength;
    }
  };
  audioCtx.createMediaStreamSource(micStream).connect(node);
  stats.state = "recording";
  setRecording(true);
  startedAt = performance.now();
  clockTimer = setInterval(() => {
    $("clock").textContent = `${((performance.now() - startedAt) / 1000).toFixed(0)} s of about 60`;
  }, 250);
  $("record-status").textContent = "Recording. Read the highlighted sentence.";
}

function nextSentence() {
  if (!ws || current >= sentences.length - 1) return;
  showSentence(current + 1);
  ws.send(JSON.stringify({ type: "sentence", index: current }));
}

function finishRecording() {
  if (!ws) return;
  stopMicrophone();
  stats.state = "checking";
  ws.send(JSON.stringify({ type: "finish" }));
  $("record-status").textContent = "Checking the recording…";
}

function cancelRecording() {
  stopMicrophone();
  stats.state = "idle";
  if (ws) { ws.send(JSON.stringify({ type: "cancel" })); ws.close(); }
  showSentence(-1);
  $("record-status").textContent = "Discarded. Nothing was kept.";
}

function onServerMessage(msg) {
  if (msg.type === "level") {
    stats.levels += 1;
    stats.lastLevel = msg;
    $("meter-label").textContent = `level: ${msg.level_db.toFixed(0)} dBFS${msg.speaking ? " · speaking" : ""}`;
  } else if (msg.type === "advice") {
    addAdvice(msg);
  } else if (msg.type === "result") {
    stats.result = msg;
    stats.state = "done";
    showReport(msg.report);
    $("record-status").textContent = msg.voice ? `Saved as “${msg.voice.name}”.` : "Not saved: please record again.";
    ws.close();
    loadVoices();
  } else if (msg.type === "error") {
    fail("server", new Error(`${msg.code}: ${msg.message}`));
    $("record-status").textContent = msg.message;
    if (stats.state === "checking") { stats.state = "idle"; ws.close(); }
  }
}

// -- the report ----------------------------------------------------------------------------------
const VERDICTS = {
  usable: "usable for cloning ✓",
  usable_with_warnings: "usable, with warnings",
  rerecord: "please record again",
};

function showReport(report) {
  $("report-card").hidden = false;
  $("verdict").textContent = VERDICTS[report.verdict] || report.verdict;
  $("verdict").className = report.verdict === "rerecord" ? "error" : "";
  const list = $("problems");
  list.innerHTML = "";
  for (const p of report.problems) {
    const li = document.createElement("li");
    li.textContent = p.message;
    li.dataset.code = p.code;
    li.className = p.severity === "severe" ? "error" : "";
    list.append(li);
  }
  if (!report.problems.length) list.innerHTML = '<li class="muted">no problems found</li>';
  const fmt = (v, unit, digits = 0) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)} ${unit}`);
  $("measures").textContent = [
    `speech ${fmt(report.speech_s, "s", 1)} of ${fmt(report.duration_s, "s", 1)}`,
    `SNR ${fmt(report.snr_db, "dB")}`,
    `loudness ${fmt(report.loudness_lufs, "LUFS")}`,
    `bandwidth ${fmt(report.bandwidth_hz && report.bandwidth_hz / 1000, "kHz", 1)}`,
  ].join(" · ");
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { $("upload-status").textContent = "Choose a file first."; return; }
  if (!$("upload-consent").checked) { $("upload-status").textContent = "Tick the consent box first."; return; }
  $("upload-status").textContent = "Uploading and checking…";
  const query = new URLSearchParams({ name: $("name").value || file.name, lang: $("lang").value, consent: "true", ui: UI_LANG });
  if ($("transcript").value.trim()) query.set("transcript", $("transcript").value.trim());
  try {
    const body = await api(`/api/voices?${query}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream", "X-Filename": file.name },
    });
    stats.result = body;
    showReport(body.report);
    $("upload-status").textContent = `Saved as “${body.voice.name}”.`;
    loadVoices();
  } catch (err) {
    if (err.body && err.body.report) showReport(err.body.report);
    $("upload-status").textContent = fail("upload", err);
  }
}

// -- my voices -----------------------------------------------------------------------------------
async function play(path, note) {
  $("player-note").textContent = "Loading…";
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    $("player-note").textContent = fail("play", new Error(body.error || `HTTP ${res.status}`));
    return;
  }
  const engine = res.headers.get("X-Voxroom-Engine");
  if (engine === "stock") {
    note += " — spoken by the stock voice: this server has no GPT-SoVITS models, so it cannot clone yet";
  } else if (engine) {
    note += ` — spoken by ${engine}`;
  }
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(await res.blob());
  player.hidden = false;
  player.dataset.playing = path;
  $("player-note").textContent = note;
  player.play().catch(() => {});
}

function button(label, onclick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.onclick = onclick;
  return b;
}

function clipLabel(span, rate) {
  return `${(span.start / rate).toFixed(1)}–${(span.end / rate).toFixed(1)} s${span.transcript ? `: “${span.transcript}”` : ""}`;
}

function renderVoice(v) {
  const li = document.createElement("li");
  li.dataset.voice = v.id;
  const name = document.createElement("input");
  name.value = v.name;
  name.maxLength = 80;
  name.className = "voice-name";
  const head = document.createElement("div");
  head.append(name, button("Rename", () => api(`/api/voices/${v.id}`, {
    method: "PATCH", body: JSON.stringify({ name: name.value }),
  }).then(loadVoices).catch((err) => alert(fail("rename", err)))),
  button("Play sample", () => play(`/api/voices/${v.id}/sample.wav`, `Sample of “${v.name}”`)),
  button("Delete", async (event) => {
    event.target.disabled = true; // one click: the voice, its files and its key are gone for good
    await api(`/api/voices/${v.id}`, { method: "DELETE" }).catch((err) => alert(fail("delete", err)));
    loadVoices();
  }));
  head.lastChild.className = "danger";
  li.append(head);
  const meta = document.createElement("p");
  meta.className = "muted";
  meta.textContent = `${v.duration.toFixed(0)} s recorded · consent by ${v.consent.who} on ${new Date(v.consent.at * 1000).toLocaleString()}`;
  li.append(meta);
  const ref = v.reference || {};
  const rate = ref.sample_rate || 16000;
  const clips = document.createElement("ul");
  clips.className = "clips";
  [ref.main, ...(ref.auxiliary || [])].forEach((span, i) => {
    if (!span) return;
    const c = document.createElement("li");
    c.textContent = `${i === 0 ? "reference" : "timbre clip"} ${clipLabel(span, rate)} `;
    c.append(button("▶", () => play(`/api/voices/${v.id}/reference.wav?clip=${i === 0 ? "main" : i}`, `Clip ${clipLabel(span, rate)}`)));
    clips.append(c);
  });
  li.append(clips);
  const form = document.createElement("form");
  form.className = "replace-clip";
  form.innerHTML = `<span class="muted">Use another reference clip:</span>
    <input name="start" type="number" step="0.1" min="0" placeholder="from s" style="width:5.5rem">
    <input name="end" type="number" step="0.1" min="0" placeholder="to s" style="width:5.5rem">
    <input name="transcript" placeholder="what is said in it" maxlength="500">
    <button type="submit">Replace</button>`;
  form.onsubmit = (event) => {
    event.preventDefault();
    const body = { start: Number(form.start.value), end: Number(form.end.value), transcript: form.transcript.value };
    api(`/api/voices/${v.id}/reference`, { method: "PUT", body: JSON.stringify(body) })
      .then(loadVoices).catch((err) => alert(fail("replace clip", err)));
  };
  li.append(form);
  return li;
}

async function loadVoices() {
  const data = await api("/api/voices");
  if (data.advice) { $("voice-notice").hidden = false; $("voice-notice").textContent = data.advice; }
  const own = data.voices.filter((v) => v.id !== "stock");
  const list = $("voices");
  list.innerHTML = "";
  if (!own.length) list.innerHTML = '<li class="muted">none yet</li>';
  for (const v of own) list.append(renderVoice(v));
  stats.voices = own.map((v) => ({ id: v.id, name: v.name }));
}

// -- wiring ----------------------------------------------------------------------------------------
if (!token) {
  $("auth-error").hidden = false;
} else {
  $("lang").onchange = () => loadScript().catch((err) => fail("script", err));
  $("record").onclick = () => startRecording().catch((err) => { stopMicrophone(); $("record-status").textContent = fail("record", err); });
  $("next").onclick = nextSentence;
  $("finish").onclick = finishRecording;
  $("cancel").onclick = cancelRecording;
  $("upload-form").onsubmit = upload;
  document.addEventListener("keydown", (event) => {
    if (event.code === "Space" && stats.state === "recording" && event.target.tagName !== "INPUT" && event.target.tagName !== "TEXTAREA") {
      event.preventDefault();
      nextSentence();
    }
  });
  Promise.all([loadScript(), loadVoices()]).catch((err) => {
    $("auth-error").hidden = false;
    $("auth-error").textContent = `Cannot use this page: ${fail("load", err)}`;
  });
}
