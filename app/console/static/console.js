// lockcore's operator console: plain JS, no dependencies, served by the service itself.
// The scopes list is polled; the selected scope's locks come from a snapshot, then from its
// live event feed (server-sent events, read with fetch so the key travels in a header).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem("lockcore-key") || "",
  me: null,
  scope: null,
  locks: new Map(), // lock id -> lock (as /v1 shows one)
  waiters: new Map(), // "type\u0000resource" -> count
  offset: 0, // server clock (s) - this browser's clock (s)
  lastEvent: "0-0", // newest event applied: the feed resumes after it
  feed: null, // AbortController of the open feed
  reload: null, // timer of the next snapshot
  scopesTimer: null,
  snapshotTimer: null,
};

class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: "Bearer " + state.key, Accept: "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.statusText;
    throw new ApiFailure(response.status, message);
  }
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function status(message, isError) {
  $("status").textContent = message || "";
  $("status").classList.toggle("error", Boolean(isError));
}

// Stream ids "<ms>-<seq>", compared as numbers.
function eventAfter(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am > bm || (am === bm && as > bs);
}

// ---- signing in -------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  try {
    state.me = await api("/console/api/me");
  } catch (error) {
    state.key = "";
    sessionStorage.removeItem("lockcore-key");
    $("sign-in-error").textContent = error.message;
    return;
  }
  sessionStorage.setItem("lockcore-key", key);
  $("sign-in-error").textContent = "";
  $("sign-in").hidden = true;
  $("main").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = state.me.name || state.me.id;
  $("who-role").textContent = state.me.sysadmin ? "sysadmin" : "reader";
  $("who-role").classList.toggle("sysadmin", state.me.sysadmin);
  document.body.classList.toggle("sysadmin", state.me.sysadmin);
  await loadScopes();
  state.scopesTimer = setInterval(loadScopes, 3000);
}

function signOut() {
  sessionStorage.removeItem("lockcore-key");
  stopFeed();
  clearInterval(state.scopesTimer);
  clearInterval(state.snapshotTimer);
  location.reload();
}

// ---- scopes -----------------------------------------------------------------------------

async function loadScopes() {
  let body;
  try {
    body = await api("/console/api/scopes");
  } catch (error) {
    $("scopes-note").textContent = error.message;
    return;
  }
  const list = $("scopes");
  list.replaceChildren();
  for (const row of body.scopes) {
    const button = el("button");
    button.type = "button";
    button.dataset.scope = row.scope;
    button.append(el("span", row.scope, "name"), el("span", row.locks, "count"));
    button.classList.toggle("selected", row.scope === state.scope);
    button.addEventListener("click", () => selectScope(row.scope));
    const item = el("li");
    item.append(button);
    list.append(item);
  }
  const none = body.scopes.length === 0 ? "No scope holds a live lock." : "";
  $("scopes-note").textContent = body.truncated ? "Only the first scopes found are shown." : none;
}

async function selectScope(scope) {
  stopFeed();
  state.scope = scope;
  state.locks.clear();
  state.waiters.clear();
  state.lastEvent = "0-0";
  $("feed").replaceChildren();
  $("scope-title").textContent = scope;
  for (const button of document.querySelectorAll("#scopes button")) {
    button.classList.toggle("selected", button.dataset.scope === scope);
  }
  await loadSnapshot();
  startFeed();
  // Waiting and expiry make no event until a call notices them: a snapshot every 2 s.
  clearInterval(state.snapshotTimer);
  state.snapshotTimer = setInterval(loadSnapshot, 2000);
}

function scopeUrl(scope) {
  return "/console/api/scopes/" + scope.split("/").map(encodeURIComponent).join("/");
}

async function loadSnapshot() {
  const scope = state.scope;
  let body;
  try {
    body = await api(scopeUrl(scope));
  } catch (error) {
    status(error.message, true);
    return;
  }
  // A snapshot older than an event already applied would undo it: the next one will do.
  if (scope !== state.scope || eventAfter(state.lastEvent, body.last_event)) return;
  state.offset = body.now - Date.now() / 1000;
  state.lastEvent = body.last_event;
  state.locks = new Map(body.locks.map((lock) => [lock.id, lock]));
  state.waiters = new Map(body.waiters.map((w) => [w.type + "\u0000" + w.resource, w.waiting]));
  render();
}

function scheduleSnapshot() {
  clearTimeout(state.reload);
  state.reload = setTimeout(loadSnapshot, 300);
}

// ---- the locks table --------------------------------------------------------------------

function timeLeft(lock) {
  if (lock.expires_at === null || lock.expires_at === undefined) return "never";
  const left = lock.expires_at - (Date.now() / 1000 + state.offset);
  return left > 0 ? left.toFixed(1) + " s" : "expired";
}

function render() {
  const body = $("locks").tBodies[0];
  const shown = new Set();
  const sorted = [...state.locks.values()].sort(
    (a, b) => a.type.localeCompare(b.type) || a.resource.localeCompare(b.resource) ||
      a.fencing_token - b.fencing_token,
  );
  const rows = [];
  for (const lock of sorted) {
    shown.add(lock.id);
    let row = body.querySelector(`tr[data-id="${CSS.escape(lock.id)}"]`);
    if (!row) {
      row = el("tr", null, "fresh"); // highlighted once, as it appears
      row.addEventListener("animationend", () => row.classList.remove("fresh"));
      row.dataset.id = lock.id;
    }
    const meta = Object.entries(lock.metadata || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    const waiting = state.waiters.get(lock.type + "\u0000" + lock.resource) || 0;
    const cells = [
      el("td", lock.type, "type"),
      el("td", lock.resource, "resource"),
      el("td", lock.owner, "owner"),
      el("td", lock.fencing_token, "token"),
      el("td", timeLeft(lock), "left"),
      el("td", waiting, "waiting"),
      el("td", meta, "meta"),
      el("td", null, "actions"),
    ];
    if (state.me && state.me.sysadmin) {
      const button = el("button", "Force release", "release");
      button.type = "button";
      button.addEventListener("click", () => forceRelease(lock));
      cells[7].append(button);
    }
    row.replaceChildren(...cells);
    rows.push(row);
  }
  body.replaceChildren(...rows);
  $("no-locks").hidden = rows.length > 0 || !state.scope;
  document.querySelectorAll("#locks .actions").forEach((cell) => {
    cell.hidden = !(state.me && state.me.sysadmin);
  });
  tick();
}

function tick() {
  for (const row of $("locks").tBodies[0].rows) {
    const lock = state.locks.get(row.dataset.id);
    if (!lock) continue;
    const cell = row.querySelector(".left");
    cell.textContent = timeLeft(lock);
    cell.classList.toggle("expired", cell.textContent === "expired");
  }
}

async function forceRelease(lock) {
  const question = `Force-release ${lock.type} ${lock.resource} held by ${lock.owner}` +
    ` (lock ${lock.id})? Its owner is not told.`;
  if (!confirm(question)) return;
  try {
    await api(`/console/api/locks/${encodeURIComponent(lock.id)}/release`, { method: "POST" });
    state.locks.delete(lock.id);
    render();
    status(`Released lock ${lock.id}.`);
  } catch (error) {
    status(`Not released: ${error.message}`, true);
  }
}

// ---- the live feed ----------------------------------------------------------------------

function stopFeed() {
  if (state.feed) state.feed.abort();
  state.feed = null;
  clearTimeout(state.reload);
  $("feed-state").textContent = "off";
  $("feed-state").classList.remove("live");
}

async function startFeed() {
  const scope = state.scope;
  const controller = new AbortController();
  state.feed = controller;
  while (!controller.signal.aborted && scope === state.scope) {
    try {
      const url = scopeUrl(scope) + "/events?after=" + encodeURIComponent(state.lastEvent);
      const response = await fetch(url, {
        headers: { Authorization: "Bearer " + state.key, Accept: "text/event-stream" },
        signal: controller.signal,
      });
      if (!response.ok) throw new ApiFailure(response.status, response.statusText);
      $("feed-state").textContent = "live";
      $("feed-state").classList.add("live");
      await readEvents(response.body.getReader(), scope);
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    $("feed-state").textContent = "reconnecting";
    $("feed-state").classList.remove("live");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function readEvents(reader, scope) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { event: "message", data: "", id: null };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") message.event = value;
        else if (field === "data") message.data += value;
        else if (field === "id") message.id = value;
      }
      if (message.event === "lock" && scope === state.scope) apply(JSON.parse(message.data), message.id);
    }
  }
}

function apply(event, id) {
  if (id && !eventAfter(id, state.lastEvent)) return; // seen already
  if (id) state.lastEvent = id;
  const existing = state.locks.get(event.id);
  if (event.event === "acquired" || event.event === "refreshed") {
    state.locks.set(event.id, {
      ...(existing || { metadata: {} }),
      id: event.id,
      scope: event.scope,
      type: event.type,
      resource: event.resource,
      owner: event.owner,
      fencing_token: event.token,
      expires_at: event.expires_at,
    });
  } else {
    state.locks.delete(event.id);
  }
  render();
  showEvent(event);
  scheduleSnapshot(); // metadata and waiters are not in events
}

function showEvent(event) {
  const item = el("li");
  const by = event.by ? ` by ${event.by}` : "";
  item.append(
    el("span", event.time.slice(11, 23) + " ", "time"),
    el("span", event.event, "event " + event.event),
    el("span", ` ${event.type} ${event.resource} ${event.owner} #${event.token}${by}`),
  );
  item.dataset.event = event.event;
  item.dataset.id = event.id;
  $("feed").prepend(item);
  while ($("feed").children.length > 200) $("feed").lastChild.remove();
}

// ---- start ------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("key").value.trim());
  });
  $("sign-out").addEventListener("click", signOut);
  setInterval(tick, 200);
  if (state.key) signIn(state.key);
});
