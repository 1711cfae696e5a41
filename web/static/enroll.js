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
// (UI_LANG and t() come from common.js.)
if (UI_LANG === "zh") {
  $("lang").value = "zh";
  $("name").value = "我的声音";
}

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
  $("next").textContent = index >= sentences.length - 1 ? t("Last sentence", "最后一句") : t("Next sentence", "下一句");
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
  if (micStream) { micStream.getTracks().forEach((track) => track.stop()); micStream = null; }
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
  if (!$("consent").checked) { $("record-status").textContent = t("Tick the consent box first: only your own voice may be cloned.", "请先勾选同意：只能克隆你本人的声音。"); return; }
  $("record-status").textContent = t("Asking for the microphone…", "正在请求麦克风……");
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
    $("record-status").textContent = `${t("No microphone", "无法使用麦克风")}: ${fail("microphone", err)}`;
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
      $("record-status").textContent = t("The connection to the server closed; nothing was kept. Please record again.", "与服务器的连接断开了，什么都没有保存。请重新录音。");
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
    $("clock").textContent = t(`${((performance.now() - startedAt) / 1000).toFixed(0)} s of about 60`, `${((performance.now() - startedAt) / 1000).toFixed(0)} 秒 / 约 60 秒`);
  }, 250);
  $("record-status").textContent = t("Recording. Read the highlighted sentence.", "正在录音。请朗读高亮的句子。");
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
  $("record-status").textContent = t("Checking the recording…", "正在检查录音……");
}

function cancelRecording() {
  stopMicrophone();
  stats.state = "idle";
  if (ws) { ws.send(JSON.stringify({ type: "cancel" })); ws.close(); }
  showSentence(-1);
  $("record-status").textContent = t("Discarded. Nothing was kept.", "已放弃，没有保存任何内容。");
}

function onServerMessage(msg) {
  if (msg.type === "level") {
    stats.levels += 1;
    stats.lastLevel = msg;
    $("meter-label").textContent = `${t("level", "音量")}: ${msg.level_db.toFixed(0)} dBFS${msg.speaking ? t(" · speaking", " · 正在说话") : ""}`;
  } else if (msg.type === "advice") {
    addAdvice(msg);
  } else if (msg.type === "result") {
    stats.result = msg;
    stats.state = "done";
    showReport(msg.report);
    $("record-status").textContent = msg.voice ? t(`Saved as “${msg.voice.name}”.`, `已保存为“${msg.voice.name}”。`) : t("Not saved: please record again.", "未保存：请重新录音。");
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
  usable: t("usable for cloning ✓", "可以用来克隆 ✓"),
  usable_with_warnings: t("usable, with warnings", "可以使用，但有提醒"),
  rerecord: t("please record again", "请重新录音"),
};

// Whether speech recognition heard the reference clip's transcript in it (the clone needs its exact words).
const WORDS = {
  verified: t("reference words checked ✓", "参考片段文字已核对 ✓"),
  mismatch: t("reference words do not match what was said", "参考片段文字与所说不符"),
  unverified: t("reference words not checked", "参考片段文字未核对"),
};

function showReport(report) {
  $("report-card").hidden = false;
  $("verdict").textContent = VERDICTS[report.verdict] || report.verdict;
  $("verdict").className = report.verdict === "rerecord" ? "error" : "";
  const list = $("problems");
  list.innerHTML = "";
  for (const p of report.problems) {
    const li = document.createElement("li");
    // Advice given while recording is part of the verdict: say when it was given.
    const when = (p.said_at || []).map((s) => `${s.toFixed(1)} s`).join(", ");
    li.textContent = when ? `${p.message} ${t(`(said during the take at ${when})`, `（录音中 ${when} 时提醒过）`)}` : p.message;
    li.dataset.code = p.code;
    li.className = p.severity === "severe" ? "error" : "";
    list.append(li);
  }
  if (!report.problems.length) list.innerHTML = `<li class="muted">${t("no problems found", "没有发现问题")}</li>`;
  const fmt = (v, unit, digits = 0) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)} ${unit}`);
  $("measures").textContent = [
    `${t("speech", "语音")} ${fmt(report.speech_s, "s", 1)} / ${fmt(report.duration_s, "s", 1)}`,
    `SNR ${fmt(report.snr_db, "dB")}`,
    `${t("loudness", "响度")} ${fmt(report.loudness_lufs, "LUFS")}`,
    `${t("bandwidth", "带宽")} ${fmt(report.bandwidth_hz && report.bandwidth_hz / 1000, "kHz", 1)}`,
    ...(report.reference ? [WORDS[report.reference.transcript_check] || WORDS.unverified] : []),
  ].join(" · ");
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) { $("upload-status").textContent = t("Choose a file first.", "请先选择文件。"); return; }
  if (!$("upload-consent").checked) { $("upload-status").textContent = t("Tick the consent box first.", "请先勾选同意。"); return; }
  $("upload-status").textContent = t("Uploading and checking…", "正在上传并检查……");
  const query = new URLSearchParams({ name: $("name").value || file.name, lang: $("lang").value, consent: "true", ui: UI_LANG });
  if ($("transcript").value.trim()) query.set("transcript", $("transcript").value.trim());
  try {
    const body = await api(`/api/voices?${query}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream", "X-Filename": file.name },
    });
    stats.result = body;
    showReport(body.report);
    $("upload-status").textContent = t(`Saved as “${body.voice.name}”.`, `已保存为“${body.voice.name}”。`);
    loadVoices();
  } catch (err) {
    if (err.body && err.body.report) showReport(err.body.report);
    $("upload-status").textContent = fail("upload", err);
  }
}

// -- my voices -----------------------------------------------------------------------------------
async function play(path, note) {
  $("player-note").textContent = t("Loading…", "加载中……");
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    $("player-note").textContent = fail("play", new Error(body.error || `HTTP ${res.status}`));
    return;
  }
  const engine = res.headers.get("X-Voxroom-Engine");
  if (engine === "stock") {
    note += t(" — spoken by the stock voice: this server has no GPT-SoVITS models, so it cannot clone yet",
      "（由内置声音朗读：本服务器没有 GPT-SoVITS 模型，暂时无法克隆）");
  } else if (engine) {
    note += t(` — spoken by ${engine}`, `（由 ${engine} 朗读）`);
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
  head.append(name, button(t("Rename", "改名"), () => api(`/api/voices/${v.id}`, {
    method: "PATCH", body: JSON.stringify({ name: name.value }),
  }).then(loadVoices).catch((err) => alert(fail("rename", err)))),
  button(t("Play sample", "试听"), () => play(`/api/voices/${v.id}/sample.wav`, t(`Sample of “${v.name}”`, `“${v.name}”的试听`))),
  button(t("Delete", "删除"), async (event) => {
    event.target.disabled = true; // one click: the voice, its files and its key are gone for good
    await api(`/api/voices/${v.id}`, { method: "DELETE" }).catch((err) => alert(fail("delete", err)));
    loadVoices();
  }));
  head.lastChild.className = "danger";
  li.append(head);
  const meta = document.createElement("p");
  meta.className = "muted";
  meta.textContent = t(`${v.duration.toFixed(0)} s recorded · consent by ${v.consent.who} on ${new Date(v.consent.at * 1000).toLocaleString()}`,
    `录音 ${v.duration.toFixed(0)} 秒 · ${v.consent.who} 于 ${new Date(v.consent.at * 1000).toLocaleString()} 同意`);
  li.append(meta);
  const ref = v.reference || {};
  const rate = ref.sample_rate || 16000;
  const clips = document.createElement("ul");
  clips.className = "clips";
  [ref.main, ...(ref.auxiliary || [])].forEach((span, i) => {
    if (!span) return;
    const c = document.createElement("li");
    c.textContent = `${i === 0 ? t("reference", "参考片段") : t("timbre clip", "音色片段")} ${clipLabel(span, rate)} `;
    c.append(button("▶", () => play(`/api/voices/${v.id}/reference.wav?clip=${i === 0 ? "main" : i}`, `${t("Clip", "片段")} ${clipLabel(span, rate)}`)));
    clips.append(c);
  });
  li.append(clips);
  const form = document.createElement("form");
  form.className = "replace-clip";
  form.innerHTML = `<span class="muted">${t("Use another reference clip:", "换一个参考片段：")}</span>
    <input name="start" type="number" step="0.1" min="0" placeholder="${t("from s", "起始秒")}" style="width:5.5rem">
    <input name="end" type="number" step="0.1" min="0" placeholder="${t("to s", "结束秒")}" style="width:5.5rem">
    <input name="transcript" placeholder="${t("what is said in it", "片段里说了什么")}" maxlength="500">
    <button type="submit">${t("Replace", "替换")}</button>`;
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
  if (data.advice) {
    $("voice-notice").hidden = false;
    $("voice-notice").textContent = cannotCloneNotice(data.advice);
  }
  const own = data.voices.filter((v) => v.id !== "stock");
  const list = $("voices");
  list.innerHTML = "";
  if (!own.length) list.innerHTML = `<li class="muted">${t("none yet", "还没有")}</li>`;
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
    $("auth-error").textContent = `${t("Cannot use this page", "无法使用此页面")}: ${fail("load", err)}`;
  });
}
