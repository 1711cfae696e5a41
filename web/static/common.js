// Shared by the host's pages (console, enrollment): the API token arrives in the URL fragment
// (never sent to the server in a URL), is kept for this tab, and goes in the Authorization header.
"use strict";
const $ = (id) => document.getElementById(id);
const token = (() => {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("voxroom-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("voxroom-token");
})();

// A JSON API call; a string body is sent as JSON. Errors carry the server's message and body.
async function api(path, options = {}) {
  const type = typeof options.body === "string" ? { "Content-Type": "application/json" } : {};
  const res = await fetch(path, { ...options, headers: { Authorization: `Bearer ${token}`, ...type, ...(options.headers || {}) } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(body.error || `HTTP ${res.status}`);
    err.body = body;
    err.status = res.status;
    throw err;
  }
  return body;
}

// The host's language: Chinese for a browser set to Chinese, else English. t("en", "中文") picks;
// elements with data-zh get that text (their whole text: wrap labels' words in a span).
const UI_LANG = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
const t = (en, zh) => (UI_LANG === "zh" ? zh : en);
// The server's notice when it cannot clone (its text is English), in the host's language.
const cannotCloneNotice = (advice) => t(advice, "内置声音无法克隆。本服务器没有 GPT-SoVITS 模型，所以录下的声音会被保存，"
  + "但暂时仍由内置声音朗读。运行 `voxroom models pull v2pro` 并用 `voxroom serve --models DIR` 启动，即可听到克隆的声音。");
if (UI_LANG === "zh") {
  document.documentElement.lang = "zh";
  for (const el of document.querySelectorAll("[data-zh]")) el.textContent = el.dataset.zh;
  for (const el of document.querySelectorAll("[data-zh-placeholder]")) el.placeholder = el.dataset.zhPlaceholder;
}
