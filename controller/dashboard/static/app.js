// agent-mesh dashboard: vanilla JS, no build step. Data from agents is untrusted: it only ever
// goes into the page through textContent, never innerHTML.
"use strict";

const STATUSES = ["active", "paused", "killed", "terminated", "stale", "lost", "crashed", "stopped"];
const AUDIT_MAX = 500;
const META_MAX = 8;

const state = {
  config: { writable: false, user: null, stop_everything: "STOP EVERYTHING" },
  token: "",
  unlocked: false,
  instances: new Map(), // key -> InstanceStatus JSON
  auditSeqs: new Set(),
  envs: new Map(), // "org/env" -> { el, agents: Map(agent_uri -> { el, rows: Map(key -> el) }) }
  pending: null, // the action waiting in the confirm dialog
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function parseUri(uri) {
  const parts = uri.replace(/^agent:\/\//, "").split("/");
  return { org: parts[0], env: parts[1], name: parts[2] };
}

function ago(iso) {
  if (!iso) return "never";
  const secs = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (secs < 1) return "just now";
  if (secs < 60) return `${Math.floor(secs)}s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h ago`;
  return `${Math.floor(secs / 86400)}d ago`;
}

function short(value, max) {
  let text = typeof value === "string" ? value : JSON.stringify(value);
  if (text === undefined) text = String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function chips(obj, cls) {
  const box = el("span", { class: "chips" });
  const entries = Object.entries(obj || {});
  for (const [name, value] of entries.slice(0, META_MAX)) {
    box.append(el("span", { class: `chip ${cls}`, title: `${name}: ${short(value, 400)}`, text: `${name}=${short(value, 40)}` }));
  }
  if (entries.length > META_MAX) box.append(el("span", { class: "chip muted", text: `+${entries.length - META_MAX}` }));
  return box;
}

// -- permissions ------------------------------------------------------------------------------
function canWrite() {
  return state.config.writable && state.unlocked;
}

function refreshMode() {
  const writable = canWrite();
  const hint = $("hint");
  let why = "";
  if (!state.config.writable) {
    why = "Read-only: this dashboard was started without MESH_DASHBOARD_TOKEN, so Kill and Resume are disabled.";
  } else if (!state.unlocked) {
    why = "Read-only until you enter the operator token (MESH_DASHBOARD_TOKEN) and press Unlock.";
  }
  hint.textContent = why;
  hint.hidden = writable;
  const mode = $("mode");
  mode.textContent = writable ? "operator" : "read-only";
  mode.dataset.mode = writable ? "operator" : "readonly";
  $("token-form").hidden = !state.config.writable || state.unlocked;
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.disabled = !writable;
    button.title = writable ? button.dataset.label : why;
  }
  $("stop-all").disabled = !writable;
  $("stop-all").title = writable ? "Kill every instance of every agent (agent://*/*/*)" : why;
}

async function unlock(token) {
  if (!token) return false;
  const response = await fetch("/api/auth", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 204) {
    state.token = token;
    state.unlocked = true;
    sessionStorage.setItem("mesh.token", token);
    return true;
  }
  sessionStorage.removeItem("mesh.token");
  return false;
}

// -- fleet ------------------------------------------------------------------------------------
function actionButtons(scope, target, instance, label) {
  const box = el("span", { class: "buttons" });
  for (const action of ["kill", "resume"]) {
    const text = action === "kill" ? "Kill" : "Resume";
    box.append(
      el("button", {
        type: "button",
        class: action === "kill" ? "btn-kill" : "btn-resume",
        "data-action": action,
        "data-scope": scope,
        "data-target": target,
        "data-instance": instance || null,
        "data-label": `${text} ${label}`,
        "aria-label": `${text} ${label}`,
        disabled: !canWrite(),
        title: canWrite() ? `${text} ${label}` : $("hint").textContent,
        text,
      }),
    );
  }
  return box;
}

function sortedInsert(parent, node, key) {
  node.dataset.key = key;
  for (const child of parent.children) {
    if (child.dataset.key > key) {
      parent.insertBefore(node, child);
      return;
    }
  }
  parent.append(node);
}

function envBlock(org, env) {
  const id = `${org}/${env}`;
  let block = state.envs.get(id);
  if (block) return block;
  const body = el("div", { class: "agents" });
  const node = el(
    "section",
    { class: "env", "data-testid": "env", "data-env": id },
    el(
      "header",
      { class: "env-head" },
      el("h3", { text: `${org} / ${env}` }),
      el("span", { class: "counts" }),
      actionButtons("env", `agent://${org}/${env}/*`, null, `every agent in ${org}/${env}`),
    ),
    body,
  );
  block = { el: node, body, agents: new Map() };
  state.envs.set(id, block);
  sortedInsert($("fleet"), node, id);
  return block;
}

function agentBlock(uri) {
  const { org, env, name } = parseUri(uri);
  const envb = envBlock(org, env);
  let block = envb.agents.get(uri);
  if (block) return block;
  const rows = el("tbody");
  const node = el(
    "article",
    { class: "agent", "data-testid": "agent", "data-agent": uri },
    el(
      "header",
      { class: "agent-head" },
      el("h4", { text: name }),
      el("code", { class: "muted", text: uri }),
      el("span", { class: "counts" }),
      actionButtons("agent", uri, null, uri),
    ),
    el(
      "table",
      { class: "instances" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["instance", "status", "last seen", "host", "metadata", "usage", ""].map((h) => el("th", { text: h })),
        ),
      ),
      rows,
    ),
  );
  block = { el: node, body: rows, rows: new Map() };
  envb.agents.set(uri, block);
  sortedInsert(envb.body, node, name);
  return block;
}

function renderInstance(inst) {
  const block = agentBlock(inst.agent_uri);
  let row = block.rows.get(inst.key);
  if (!row) {
    row = el(
      "tr",
      { "data-testid": "instance", "data-agent": inst.agent_uri, "data-instance": inst.instance },
      el("td", { class: "inst" }, el("code", { text: inst.instance })),
      el("td", {}, el("span", { class: "status" })),
      el("td", { class: "seen" }),
      el("td", { class: "host muted" }),
      el("td", { class: "meta" }),
      el("td", { class: "usage" }),
      el("td", {}, actionButtons("instance", inst.agent_uri, inst.instance, `${inst.agent_uri} instance ${inst.instance}`)),
    );
    block.rows.set(inst.key, row);
    sortedInsert(block.body, row, inst.instance);
  }
  row.dataset.status = inst.status;
  const badge = row.querySelector(".status");
  badge.className = `status status-${inst.status}`;
  badge.textContent = inst.status;
  badge.title = inst.cause || "";
  const seen = row.querySelector(".seen");
  seen.dataset.ts = inst.last_seen;
  seen.textContent = ago(inst.last_seen);
  seen.title = inst.last_seen;
  row.querySelector(".host").textContent = inst.host ? `${inst.host}:${inst.pid}` : "";
  const meta = { ...inst.metadata };
  if (inst.kill_keys && inst.kill_keys.length) meta["held by"] = inst.kill_keys.join(", ");
  if (!inst.hard_kill) meta.hard_kill = false;
  row.querySelector(".meta").replaceChildren(chips(meta, "chip-meta"));
  row.querySelector(".usage").replaceChildren(chips(inst.usage, "chip-usage"));
}

function removeInstance(key) {
  const inst = state.instances.get(key);
  state.instances.delete(key);
  if (!inst) return;
  const { org, env } = parseUri(inst.agent_uri);
  const envb = state.envs.get(`${org}/${env}`);
  const block = envb && envb.agents.get(inst.agent_uri);
  if (!block) return;
  const row = block.rows.get(key);
  if (row) row.remove();
  block.rows.delete(key);
  if (block.rows.size === 0) {
    block.el.remove();
    envb.agents.delete(inst.agent_uri);
  }
  if (envb.agents.size === 0) {
    envb.el.remove();
    state.envs.delete(`${org}/${env}`);
  }
}

function countLine(node, list) {
  const counts = {};
  for (const inst of list) counts[inst.status] = (counts[inst.status] || 0) + 1;
  node.replaceChildren(
    ...STATUSES.filter((s) => counts[s]).map((s) => el("span", { class: `count status-${s}`, text: `${counts[s]} ${s}` })),
  );
}

function refreshCounts() {
  const all = [...state.instances.values()];
  const counts = {};
  for (const inst of all) counts[inst.status] = (counts[inst.status] || 0) + 1;
  const summary = $("summary");
  summary.replaceChildren(
    el("span", { class: "total", "data-status": "total", "data-count": all.length, text: `${all.length} instances` }),
    ...STATUSES.map((s) =>
      el(
        "span",
        { class: `count status-${s}${counts[s] ? "" : " zero"}`, "data-status": s, "data-count": counts[s] || 0 },
        el("strong", { text: String(counts[s] || 0) }),
        ` ${s}`,
      ),
    ),
  );
  for (const [id, envb] of state.envs) {
    countLine(envb.el.querySelector(".env-head .counts"), all.filter((i) => id === `${parseUri(i.agent_uri).org}/${parseUri(i.agent_uri).env}`));
    for (const [uri, block] of envb.agents) {
      countLine(block.el.querySelector(".agent-head .counts"), all.filter((i) => i.agent_uri === uri));
    }
  }
  $("fleet-empty").hidden = all.length > 0;
}

let countsQueued = false;
function queueCounts() {
  if (countsQueued) return;
  countsQueued = true;
  requestAnimationFrame(() => {
    countsQueued = false;
    refreshCounts();
  });
}

function upsert(inst) {
  state.instances.set(inst.key, inst);
  renderInstance(inst);
  queueCounts();
}

// -- audit ------------------------------------------------------------------------------------
function auditItem(ev) {
  const where = ev.agent_uri ? `${ev.agent_uri}${ev.instance ? `#${ev.instance}` : ""}` : `${ev.target || ""}${ev.instance ? `#${ev.instance}` : ""}`;
  const detail = ev.data && ev.data.status ? ev.data.status : "";
  const time = new Date(ev.time);
  return el(
    "li",
    { class: `event event-${ev.type}`, "data-testid": "audit-entry", "data-type": ev.type, "data-seq": ev.seq },
    el("time", { datetime: ev.time, title: ev.time, text: time.toLocaleTimeString() }),
    el("span", { class: `etype etype-${ev.type}`, text: ev.type }),
    el("code", { class: "where", text: where }),
    detail ? el("span", { class: "detail", text: detail }) : null,
    ev.actor ? el("span", { class: "actor", text: `by ${ev.actor}` }) : null,
    ev.reason ? el("q", { class: "reason", text: ev.reason }) : null,
  );
}

function addAudit(ev) {
  if (state.auditSeqs.has(ev.seq)) return;
  state.auditSeqs.add(ev.seq);
  const list = $("audit");
  list.prepend(auditItem(ev));
  while (list.children.length > AUDIT_MAX) {
    const last = list.lastElementChild;
    state.auditSeqs.delete(Number(last.dataset.seq));
    last.remove();
  }
}

// -- live stream ------------------------------------------------------------------------------
function applySnapshot(snap) {
  const keys = new Set(snap.instances.map((i) => i.key));
  for (const key of [...state.instances.keys()]) if (!keys.has(key)) removeInstance(key);
  for (const inst of snap.instances) upsert(inst);
  for (const ev of snap.audit) addAudit(ev);
  setNats(snap.nats.connected);
  refreshMode();
  refreshCounts();
}

function setLive(text, cls) {
  const pill = $("live");
  pill.textContent = text;
  pill.className = `pill ${cls}`;
}

function setNats(connected) {
  if (connected) setLive("live", "pill-ok");
  else setLive("NATS disconnected", "pill-bad");
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => setLive("live", "pill-ok"));
  source.addEventListener("error", () => setLive("reconnecting…", "pill-wait"));
  source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("instance", (e) => {
    upsert(JSON.parse(e.data));
  });
  source.addEventListener("removed", (e) => {
    removeInstance(JSON.parse(e.data).key);
    queueCounts();
  });
  source.addEventListener("audit", (e) => addAudit(JSON.parse(e.data)));
  source.addEventListener("nats", (e) => setNats(JSON.parse(e.data).connected));
  window.addEventListener("beforeunload", () => source.close());
}

// -- commands ---------------------------------------------------------------------------------
function openConfirm(action, scope, target, instance) {
  const everything = scope === "everything";
  const what = instance ? `${target}#${instance}` : target;
  state.pending = { action, target, instance, everything };
  $("confirm-title").textContent = everything ? "Stop every agent?" : `${action === "kill" ? "Kill" : "Resume"} ${what}?`;
  const matching = [...state.instances.values()].filter((i) => matches(target, instance, i));
  $("confirm-text").textContent =
    action === "kill"
      ? `Writes a kill record for ${what}: ${matching.length} known instance(s) halt at their next safe point.`
      : `Clears the kill record of ${what}; instances still held by another record stay halted.`;
  $("confirm-reason").value = "";
  $("confirm-typed").value = "";
  $("confirm-phrase").textContent = state.config.stop_everything;
  $("confirm-typed-label").hidden = !everything;
  $("confirm-error").hidden = true;
  const ok = $("confirm-ok");
  ok.textContent = action === "kill" ? "Kill" : "Resume";
  ok.className = action === "kill" ? "btn-kill" : "btn-resume";
  validateConfirm();
  $("confirm").showModal();
  $("confirm-reason").focus();
}

function matches(target, instance, inst) {
  const t = parseUri(target);
  const a = parseUri(inst.agent_uri);
  for (const part of ["org", "env", "name"]) if (t[part] !== "*" && t[part] !== a[part]) return false;
  return !instance || instance === inst.instance;
}

function validateConfirm() {
  const p = state.pending;
  const reasonOk = $("confirm-reason").value.trim().length > 0;
  const typedOk = !p || !p.everything || $("confirm-typed").value.trim() === state.config.stop_everything;
  $("confirm-ok").disabled = !(reasonOk && typedOk);
}

async function submitConfirm(event) {
  event.preventDefault();
  const p = state.pending;
  if (!p) return;
  const ok = $("confirm-ok");
  const error = $("confirm-error");
  const user = $("user").value.trim();
  if (!user && !state.config.user) {
    error.textContent = "Type your name at the top first: the audit log records who did this.";
    error.hidden = false;
    return;
  }
  ok.disabled = true;
  ok.textContent = p.action === "kill" ? "Killing…" : "Resuming…";
  const body = { target: p.target, reason: $("confirm-reason").value.trim() };
  if (p.instance) body.instance = p.instance;
  if (user) body.user = user;
  if (p.everything) body.confirm = $("confirm-typed").value.trim();
  try {
    const response = await fetch(`/api/${p.action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${state.token}` },
      body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) {
      if (response.status === 401 || (response.status === 403 && /token/.test(data.error || ""))) {
        state.unlocked = false;
        sessionStorage.removeItem("mesh.token");
        refreshMode();
      }
      throw new Error(data.error || `HTTP ${response.status}`);
    }
    $("confirm").close();
    state.pending = null;
    showReport(data);
  } catch (err) {
    error.textContent = `Failed: ${err.message}`;
    error.hidden = false;
    ok.textContent = p.action === "kill" ? "Kill" : "Resume";
    validateConfirm();
  }
}

function showReport(r) {
  const verb = r.action === "kill" ? "Kill" : "Resume";
  $("report-title").textContent = `${verb} ${r.target}`;
  const expected = r.expected || 0;
  $("report-summary").textContent =
    `${r.acked} of ${expected} expected instance(s) acknowledged` +
    (r.missing.length ? `, ${r.missing.length} silent` : "") +
    ` · by ${r.actor} · command ${r.command_id.slice(0, 12)}`;
  const rows = $("report-rows");
  rows.replaceChildren(
    ...r.instances.map((row) =>
      el(
        "tr",
        { "data-testid": "report-row", "data-status": row.status },
        el("td", {}, el("code", { text: row.agent_uri })),
        el("td", {}, el("code", { text: row.instance })),
        el("td", {}, el("span", { class: `status status-${row.status}`, text: row.status })),
        el("td", {}, chips(row.metadata, "chip-meta")),
        el("td", { class: "muted", text: row.checkpoint === null || row.checkpoint === undefined ? "" : short(row.checkpoint, 80) }),
      ),
    ),
  );
  const notes = $("report-notes");
  notes.replaceChildren();
  for (const m of r.missing) {
    notes.append(el("li", { class: "error", text: `silent: ${m.agent_uri}#${m.instance} (${m.status}, last seen ${ago(m.last_seen)})` }));
  }
  for (const m of r.already_halted || []) {
    notes.append(el("li", { text: `already halted by another record: ${m.agent_uri}#${m.instance}` }));
  }
  for (const h of r.still_held_by || []) {
    const rec = h.record || {};
    notes.append(el("li", { class: "error", text: `still held by ${h.target} (by ${rec.actor || "?"}: ${rec.reason || "no reason"})` }));
  }
  if (r.action === "resume" && r.cleared === false) notes.append(el("li", { text: `there was no kill record for exactly ${r.target}` }));
  $("report").showModal();
}

// -- start ------------------------------------------------------------------------------------
function wire() {
  const user = $("user");
  user.value = localStorage.getItem("mesh.user") || state.config.user || "";
  user.addEventListener("input", () => localStorage.setItem("mesh.user", user.value.trim()));
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await unlock($("token").value.trim());
    $("token").value = "";
    $("token").placeholder = ok ? "MESH_DASHBOARD_TOKEN" : "wrong token, try again";
    refreshMode();
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    openConfirm(button.dataset.action, button.dataset.scope, button.dataset.target, button.dataset.instance);
  });
  $("stop-all").addEventListener("click", () => openConfirm("kill", "everything", "agent://*/*/*", null));
  $("confirm-form").addEventListener("submit", submitConfirm);
  $("confirm-reason").addEventListener("input", validateConfirm);
  $("confirm-typed").addEventListener("input", validateConfirm);
  $("confirm-cancel").addEventListener("click", () => {
    state.pending = null;
    $("confirm").close();
  });
  $("report-close").addEventListener("click", () => $("report").close());
  setInterval(() => {
    for (const node of document.querySelectorAll("[data-ts]")) node.textContent = ago(node.dataset.ts);
  }, 1000);
}

async function main() {
  const response = await fetch("/api/config");
  state.config = await response.json();
  $("prefix").textContent = `prefix ${state.config.prefix}`;
  wire();
  // A token may come in the URL fragment (never sent to the server), e.g. from `mesh dashboard`.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromUrl = fragment.get("token");
  if (fromUrl) history.replaceState(null, "", location.pathname + location.search);
  const token = fromUrl || sessionStorage.getItem("mesh.token");
  if (state.config.writable && token) await unlock(token);
  refreshMode();
  refreshCounts();
  connect();
}

main();
