// The console's room links: the listener page and the OBS overlay link of the open room, which last
// until the host rotates them ("Rotate links": the old ones stop working at once, pages that use them
// say so, and the new ones are shown here). Uses common.js ($, api, t).
"use strict";

function showLinks(links) {
  $("listen-link").href = new URL(links.listen_url, location.href).href;
  $("overlay-link").href = new URL(links.overlay_url, location.href).href;
  $("overlay-note").textContent = t(
    "These links work until you rotate them, also across server restarts: put the overlay in OBS once.",
    "这些链接在你更换之前一直有效，服务器重启后也有效：OBS 叠加层只需设置一次。");
}

async function loadLinks(room) {
  $("links-status").textContent = "";
  showLinks(await api(`/api/rooms/${encodeURIComponent(room.id)}/links`));
}

$("rotate-links").onclick = async () => {
  if (!current) return;
  if (!confirm(t("Replace this room's listener and OBS links? The old ones stop working at once: "
      + "open listener pages and the OBS overlay show that the link was replaced.",
      "更换此直播间的听众链接和 OBS 链接？旧链接会立即失效：正在使用它们的页面和 OBS 叠加层会显示链接已被更换。"))) return;
  try {
    showLinks(await api(`/api/rooms/${encodeURIComponent(current.id)}/links/rotate`, { method: "POST" }));
    $("links-status").className = "muted";
    $("links-status").textContent = t("New links below; paste the overlay link into OBS again.",
      "已生成新链接；请把新的叠加层链接重新粘贴到 OBS。");
  } catch (err) {
    $("links-status").className = "error";
    $("links-status").textContent = err.message;
  }
};
