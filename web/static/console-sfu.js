// Console: the room's SFU endpoints (REST: /api/rooms/ROOM/sfu). A room publishes its co-host over
// WHIP to each endpoint; this card adds and removes endpoints and shows each one's state (publishing,
// retrying with the next try's time, error). Tokens are write-only: the server only says whether one
// is stored, and saving the list again keeps it ("token": null). Uses console.js's `current`.
"use strict";
let sfuEndpoints = [];

function sfuLabel(e) {
  let state = e.state;
  if (e.state === "retrying" && e.next_retry_at) state += ` (${t("next try", "下次重试")} ${new Date(e.next_retry_at * 1000).toLocaleTimeString()})`;
  if ((e.state === "retrying" || e.state === "error") && e.error) state += `: ${e.error}`;
  const janus = e.playback ? ` → ${t("listeners play from", "听众从")} ${e.playback.janus} #${e.playback.room}` : "";
  return `${e.url}${e.has_token ? " 🔒" : ""} — ${state}${janus}`;
}

function showSfu(view) {
  sfuEndpoints = view.endpoints;
  const list = $("sfu-endpoints");
  list.innerHTML = sfuEndpoints.length ? "" : `<li class="muted">${t("none: listeners play from this server", "无：听众直接从本服务器收听")}</li>`;
  sfuEndpoints.forEach((e, i) => {
    const li = document.createElement("li");
    li.className = "sfu-endpoint";
    li.dataset.state = e.state;
    li.textContent = sfuLabel(e);
    const remove = document.createElement("button");
    remove.textContent = t("remove", "移除");
    remove.style.marginLeft = ".5rem";
    remove.onclick = () => saveSfu(sfuEndpoints.filter((_, j) => j !== i).map(keptEndpoint));
    li.append(remove);
    list.append(li);
  });
  $("sfu-stop").disabled = !sfuEndpoints.length;
}

// An endpoint as shown, sent back unchanged: its stored token stays (null = keep).
const keptEndpoint = (e) => ({ url: e.url, token: null, ...(e.playback ? { playback: e.playback } : {}) });

async function loadSfu(room) {
  $("sfu-panel").hidden = false;
  showSfu(await api(`/api/rooms/${room.id}/sfu`));
}

async function saveSfu(endpoints) {
  try {
    showSfu(endpoints.length
      ? await api(`/api/rooms/${current.id}/sfu`, { method: "PUT", body: JSON.stringify({ endpoints }) })
      : await api(`/api/rooms/${current.id}/sfu`, { method: "DELETE" }));
    $("sfu-status").textContent = t("saved", "已保存");
    return true;
  } catch (err) {
    $("sfu-status").textContent = err.message;
    return false;
  }
}

$("sfu-form").onsubmit = async (e) => {
  e.preventDefault();
  if (!current) return;
  const endpoint = { url: $("sfu-url").value.trim() };
  if ($("sfu-token").value) endpoint.token = $("sfu-token").value;
  if ($("sfu-janus").value.trim()) endpoint.playback = { janus: $("sfu-janus").value.trim(), room: Number($("sfu-janus-room").value) };
  if (await saveSfu([...sfuEndpoints.map(keptEndpoint), endpoint])) {
    for (const id of ["sfu-url", "sfu-token", "sfu-janus", "sfu-janus-room"]) $(id).value = "";
  }
};
$("sfu-stop").onclick = () => current && saveSfu([]);

setInterval(() => { if (current) loadSfu(current).catch(() => {}); }, 2000);
