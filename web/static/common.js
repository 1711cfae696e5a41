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
    throw err;
  }
  return body;
}
