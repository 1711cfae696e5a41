// The open room's own LLM endpoint (console card "Replies in this room"): base URL, model (listed from
// the endpoint's /v1/models when it answers), API key (write-only: the page never gets it back), a Test
// that shows the time to the first token or the exact error, and a notice while the room's replies are
// failing. A room without its own endpoint uses the account's ("Replies (LLM)" card), then the server's.
// Uses common.js ($, api, t) and console.js's `current` and `loadCohost`.
"use strict";

const roomLlmPath = (suffix = "") => `/api/rooms/${encodeURIComponent(current.id)}/llm${suffix}`;
let roomLlmTimer = null;

function roomLlmStatus(text, isError) {
  $("room-llm-status").textContent = text;
  $("room-llm-status").className = isError ? "error" : "muted";
}

function showRoomLlm(view) {
  $("room-llm-panel").hidden = false;
  const source = {
    room: t("this room's own endpoint", "本直播间自己的设置"),
    account: t("your account's endpoint (Replies card)", "账户的设置（“回复”卡片）"),
    server: t("the server's endpoint", "服务器的设置"),
  }[view.source];
  $("room-llm-mode").textContent = view.mode === "llm"
    ? t(`This room answers with ${view.model} at ${view.base_url}: ${source}.`,
        `本直播间用 ${view.base_url} 上的 ${view.model} 回答：${source}。`)
    : t("This room reads chat aloud: no LLM is set for it, its account or the server.",
        "本直播间为朗读模式：直播间、账户和服务器都没有设置 LLM。");
  if (view.source === "room" && !$("room-llm-url").matches(":focus")) {
    $("room-llm-url").value = view.base_url;
    $("room-llm-model").value = view.model;
  }
  $("room-llm-key").placeholder = view.source === "room" && view.has_api_key
    ? t("saved; leave empty to keep", "已保存；留空则保留") : t("none", "无");
  $("room-llm-clear").hidden = view.source !== "room";
  const notice = $("room-llm-notice");
  notice.hidden = !view.failing;
  notice.textContent = view.failing
    ? t(`The LLM is failing for this room, so it reads chat aloud until it answers again: ${view.last_error}`,
        `本直播间的 LLM 出错，在恢复之前改为朗读聊天：${view.last_error}`) : "";
}

async function loadRoomLlm(room) {
  $("room-llm-url").value = $("room-llm-model").value = $("room-llm-key").value = "";
  $("room-llm-models").innerHTML = $("room-llm-models-note").textContent = "";
  roomLlmStatus("");
  showRoomLlm(await api(`/api/rooms/${encodeURIComponent(room.id)}/llm`));
  clearInterval(roomLlmTimer);
  // The failing notice follows the room's replies as they go.
  roomLlmTimer = setInterval(() => {
    if (current && current.id === room.id) api(roomLlmPath()).then(showRoomLlm).catch(() => {});
  }, 2000);
}

function roomLlmBody() {
  const body = { base_url: $("room-llm-url").value.trim() || null, model: $("room-llm-model").value.trim() };
  if ($("room-llm-key").value) body.api_key = $("room-llm-key").value;
  return body;
}

// The endpoint's models, offered in the model field (it still takes any name).
async function listRoomModels() {
  if (!current || !$("room-llm-url").value.trim()) return;
  const body = roomLlmBody();
  delete body.model;
  const r = await api(roomLlmPath("/models"), { method: "POST", body: JSON.stringify(body) }).catch((e) => ({ models: [], error: e.message }));
  $("room-llm-models").innerHTML = "";
  for (const id of r.models) {
    const option = document.createElement("option");
    option.value = id;
    $("room-llm-models").append(option);
  }
  if (r.models.length && !$("room-llm-model").value) $("room-llm-model").value = r.models[0];
  $("room-llm-models-note").textContent = r.error ? `${t("no model list", "无法列出模型")}: ${r.error}`
    : t(`${r.models.length} models listed`, `列出了 ${r.models.length} 个模型`);
  $("room-llm-models-note").className = r.error ? "error" : "muted";
}

async function saveRoomLlm(body) {
  try {
    showRoomLlm(await api(roomLlmPath(), { method: "PUT", body: JSON.stringify(body) }));
    $("room-llm-key").value = "";
    roomLlmStatus(t("saved", "已保存"));
    loadCohost(current).catch(() => {});
  } catch (err) {
    roomLlmStatus(err.message, true);
  }
}

$("room-llm-url").addEventListener("change", listRoomModels);
$("room-llm-key").addEventListener("change", listRoomModels);
$("room-llm-save").onclick = () => saveRoomLlm(roomLlmBody());
$("room-llm-clear").onclick = () => saveRoomLlm({ base_url: null });
$("room-llm-test").onclick = async () => {
  roomLlmStatus(t("testing…", "测试中…"));
  try {
    const body = $("room-llm-url").value.trim() ? roomLlmBody() : {};
    const r = await api(roomLlmPath("/test"), { method: "POST", body: JSON.stringify(body) });
    if (r.models.length) {
      $("room-llm-models").innerHTML = "";
      for (const id of r.models) { const o = document.createElement("option"); o.value = id; $("room-llm-models").append(o); }
    }
    roomLlmStatus(r.ok
      ? t(`works: first token in ${r.first_token_ms} ms`, `可用：首字用时 ${r.first_token_ms} 毫秒`) + (r.error ? ` (${r.error})` : "")
      : `${t("does not work", "不可用")}: ${r.error}`, !r.ok);
  } catch (err) {
    roomLlmStatus(err.message, true);
  }
};
