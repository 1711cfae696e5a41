// Keyboard shortcuts of the host console while its tab is focused (none while typing in a field):
//   S       skip the reply being spoken (POST /api/rooms/ROOM/cohost/skip)
//   T held  "I'm talking": host-speaking on at keydown, off at keyup or when the tab loses focus
// The "I'm talking" button shares the same state. Uses common.js ($, api, t) and console.js's
// `current` (the open room). docs/stream-deck.md lists the same actions as HTTP calls.
"use strict";

let talking = false;

async function setTalking(on) {
  if (!current || on === talking) return;
  talking = on;
  $("talking").textContent = on ? t("I'm done talking", "我说完了") : t("I'm talking", "我在说话");
  $("talking").classList.toggle("primary", on);
  try {
    await api(`/api/rooms/${encodeURIComponent(current.id)}/host-speaking`, { method: "POST", body: JSON.stringify({ speaking: on }) });
    shortcutStatus("");
  } catch (err) {
    shortcutStatus(`${t("I'm talking", "我在说话")}: ${err.message}`, true);
  }
}

async function skipCurrent() {
  if (!current) return;
  try {
    const r = await api(`/api/rooms/${encodeURIComponent(current.id)}/cohost/skip`, { method: "POST" });
    shortcutStatus(r.skipped ? t("skipped", "已跳过") : t("nothing to skip", "没有可跳过的回复"));
  } catch (err) {
    shortcutStatus(`${t("skip", "跳过")}: ${err.message}`, true);
  }
}

function shortcutStatus(text, isError) {
  $("shortcut-status").textContent = text;
  $("shortcut-status").className = isError ? "error" : "muted";
}

function typing(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target) || !current) return;
  const key = e.key.toLowerCase();
  if (key === "s" && !e.repeat) { e.preventDefault(); skipCurrent(); }
  if (key === "t") { e.preventDefault(); if (!e.repeat) setTalking(true); }
});
document.addEventListener("keyup", (e) => {
  if (e.key.toLowerCase() === "t" && talking) setTalking(false);
});
// A key released in another window never reaches this one: leaving the tab ends push-to-talk.
window.addEventListener("blur", () => { if (talking) setTalking(false); });
