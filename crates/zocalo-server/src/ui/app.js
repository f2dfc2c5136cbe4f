// zocalo web UI: plain JavaScript, no build step. Talks to /api and streams answers over SSE
// (fetch + ReadableStream, since EventSource can send neither a body nor a header).
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
};

const TOKEN_KEY = "zocalo.token";
let token = localStorage.getItem(TOKEN_KEY) || "";
let currentConv = null;
let busy = false;
let eventsAbort = null;

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, opts.headers || {});
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method: opts.method || (opts.body !== undefined ? "POST" : "GET"),
    headers,
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    signal: opts.signal,
  });
  if (r.status === 401) { signOut("Your token was not accepted."); throw new ApiError(401, "unauthorized"); }
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error.message || msg; } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, msg);
  }
  if (opts.raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

// Parse a text/event-stream body, calling onEvent(name, data) per event.
async function readSse(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) {
        let parsed = data.join("\n");
        try { parsed = JSON.parse(parsed); } catch (_) { /* plain text */ }
        onEvent(name, parsed);
      }
    }
  }
}

function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// ---- sign in -------------------------------------------------------------------------------

function showSignIn(message) {
  $("#app").classList.add("hidden");
  $("#signin").classList.remove("hidden");
  $("#signin-error").textContent = message || "";
  $("#token").focus();
}

function signOut(message) {
  token = "";
  localStorage.removeItem(TOKEN_KEY);
  if (eventsAbort) eventsAbort.abort();
  showSignIn(message);
}

async function signIn(candidate) {
  token = candidate.trim();
  const r = await fetch("/api/conversations?limit=1", { headers: { Authorization: `Bearer ${token}` } });
  if (!r.ok) { signOut(r.status === 401 ? "That token is not right." : `The server answered ${r.status}.`); return; }
  localStorage.setItem(TOKEN_KEY, token);
  $("#signin").classList.add("hidden");
  $("#app").classList.remove("hidden");
  probeOptional();
  startEvents();
  route();
}

// Agents and services pages appear when this build serves their APIs.
async function probeOptional() {
  for (const [nav, path] of [["#nav-agents", "/api/agents/batches"], ["#nav-services", "/api/services"]]) {
    try {
      const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
      $(nav).classList.toggle("hidden", !r.ok);
    } catch (_) { /* stays hidden */ }
  }
}

// ---- routing -------------------------------------------------------------------------------

const pages = { chat: loadChat, memory: loadMemory, schedules: loadSchedules, jobs: loadJobs, agents: loadAgents, services: loadServices };

function route() {
  const name = (location.hash || "#chat").slice(1);
  const page = pages[name] ? name : "chat";
  for (const p of Object.keys(pages)) $(`#page-${p}`).classList.toggle("hidden", p !== page);
  document.querySelectorAll(".nav-item").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  pages[page]().catch((e) => console.error(e));
}

// ---- chat ----------------------------------------------------------------------------------

async function loadChat() {
  const convs = await api("/api/conversations?limit=100");
  const list = $("#conv-list");
  list.replaceChildren();
  for (const c of convs) {
    const li = el("li", c.id === currentConv ? "active" : "");
    li.append(el("span", "", c.title || "Conversation"), el("small", "", `${c.message_count} messages · ${fmtTime(c.updated_at)}`));
    li.dataset.id = c.id;
    li.addEventListener("click", () => openConversation(c.id));
    list.append(li);
  }
  $("#message").focus();
}

function addMessage(role, text) {
  $("#thread-empty").classList.add("hidden");
  const m = el("div", `msg ${role}`);
  m.append(el("div", "avatar", role === "user" ? "You" : "◆"));
  const bubble = el("div", "bubble", text);
  m.append(bubble);
  $("#thread").append(m);
  $("#thread").scrollTop = $("#thread").scrollHeight;
  return m;
}

function clearThread() {
  const t = $("#thread");
  t.querySelectorAll(".msg").forEach((m) => m.remove());
  $("#thread-empty").classList.remove("hidden");
}

async function openConversation(id) {
  currentConv = id;
  const c = await api(`/api/conversations/${encodeURIComponent(id)}`);
  clearThread();
  for (const m of c.messages) {
    if (m.role === "tool") continue;
    if (m.role === "assistant" && !m.content) continue;
    addMessage(m.role, m.content);
  }
  document.querySelectorAll("#conv-list li").forEach((li) => li.classList.toggle("active", li.dataset.id === id));
}

// A tool call waiting for a decision: what it would do, and allow / deny / always buttons
// (POST /api/approvals/{id}); the answer goes on as soon as one is pressed.
function approvalBox(p) {
  const box = el("div", "approval");
  const what = p.arguments && typeof p.arguments.command === "string" ? p.arguments.command : JSON.stringify(p.arguments);
  box.append(el("div", "", `Allow ${p.tool}?`), el("code", "", what));
  const row = el("div", "approval-buttons");
  for (const [decision, label] of [["allow", "Allow"], ["deny", "Deny"], ["always", "Always in this conversation"]]) {
    const b = el("button", decision === "deny" ? "secondary" : "", label);
    b.dataset.decision = decision;
    b.addEventListener("click", async () => {
      row.querySelectorAll("button").forEach((x) => { x.disabled = true; });
      try {
        await api(`/api/approvals/${encodeURIComponent(p.id)}`, { body: { decision } });
        box.classList.add(decision === "deny" ? "denied" : "allowed");
        box.append(el("small", "", decision === "deny" ? "denied" : "allowed"));
      } catch (e) {
        box.append(el("small", "", e.message));
      }
    });
    row.append(b);
  }
  box.append(row);
  return box;
}

async function send(text) {
  if (busy || !text.trim()) return;
  busy = true;
  $("#send").disabled = true;
  addMessage("user", text);
  const answer = addMessage("assistant", "");
  answer.classList.add("streaming");
  const bubble = answer.querySelector(".bubble");
  const path = currentConv ? `/api/conversations/${encodeURIComponent(currentConv)}/ask` : "/api/conversations/ask";
  try {
    const r = await api(path, { body: { message: text }, raw: true });
    await readSse(r, (name, data) => {
      if (name === "text") {
        bubble.textContent += data.text;
        $("#thread").scrollTop = $("#thread").scrollHeight;
      } else if (name === "tool_call") {
        answer.insertBefore(el("div", "tool", `⚙ ${data.name}`), bubble);
      } else if (name === "approval") {
        answer.insertBefore(approvalBox(data), bubble);
      } else if (name === "done") {
        bubble.textContent = data.text;
        currentConv = data.conversation_id;
      } else if (name === "error") {
        answer.classList.add("failed");
        bubble.textContent = data.error ? data.error.message : "the answer failed";
      }
    });
  } catch (e) {
    answer.classList.add("failed");
    bubble.textContent = e.message;
  } finally {
    answer.classList.remove("streaming");
    busy = false;
    $("#send").disabled = false;
    loadChat().catch(() => {});
  }
}

// ---- memory --------------------------------------------------------------------------------

async function loadMemory() {
  try {
    const s = await api("/api/memory/stats");
    $("#memory-stats").textContent = `${s.memories} memories · ${s.vectors} vectors · embedder ${s.embedder || "none (keywords only)"}`;
  } catch (e) { $("#memory-stats").textContent = e.message; }
  $("#memory-q").focus();
}

async function searchMemory() {
  const q = $("#memory-q").value.trim();
  const scope = $("#memory-scope").value.trim();
  const out = $("#memory-results");
  out.replaceChildren();
  if (!q) return;
  const params = new URLSearchParams({ q, limit: "20" });
  if (scope) params.set("scope", scope);
  try {
    const hits = await api(`/api/memory/search?${params}`);
    if (!hits.length) out.append(el("li", "muted", "Nothing found."));
    for (const h of hits) {
      const li = el("li", "hit");
      const head = el("div", "hit-head");
      head.append(el("span", "", `${h.scope} · ${h.id}`), el("span", "score", h.score.toFixed(3)));
      const forget = el("button", "link small", "forget");
      forget.addEventListener("click", async () => { await api(`/api/memory/${encodeURIComponent(h.id)}`, { method: "DELETE" }); li.remove(); loadMemory(); });
      head.append(forget);
      li.append(head, el("div", "", h.text));
      out.append(li);
    }
  } catch (e) { out.append(el("li", "error", e.message)); }
}

// ---- schedules -----------------------------------------------------------------------------

function actionText(a) {
  if (!a) return "";
  if (a.kind === "ask") return `ask: ${a.message}`;
  if (a.kind === "skill") return `skill: ${a.name} ${(a.args || []).join(" ")}`;
  if (a.kind === "shell") return `shell: ${a.command}`;
  return JSON.stringify(a);
}

async function loadSchedules() {
  if (!$("#sched-tz").value) $("#sched-tz").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const list = await api("/api/schedules");
  const out = $("#sched-list");
  out.replaceChildren();
  if (!list.length) out.append(el("div", "muted", "No automations yet. Add one above."));
  for (const a of list) {
    const card = el("div", "sched");
    const head = el("div", "sched-head");
    const left = el("div");
    left.append(el("div", "name", a.name), el("div", "", actionText(a.action)), el("div", "rule", `${a.rrule} · from ${a.start} ${a.tz}`));
    const right = el("div");
    right.append(el("span", `pill ${a.paused ? "paused" : "active"}`, a.paused ? "paused" : "active"), document.createTextNode(" "));
    const toggle = el("button", "small", a.paused ? "Resume" : "Pause");
    toggle.addEventListener("click", async () => { await api(`/api/schedules/${encodeURIComponent(a.name)}/${a.paused ? "resume" : "pause"}`, { body: {} }); loadSchedules(); });
    const del = el("button", "small", "Delete");
    del.addEventListener("click", async () => { await api(`/api/schedules/${encodeURIComponent(a.name)}`, { method: "DELETE" }); loadSchedules(); });
    right.append(toggle, document.createTextNode(" "), del);
    head.append(left, right);
    const occ = el("div", "occurrences");
    for (const t of a.upcoming) occ.append(el("span", "", fmtTime(t)));
    if (!a.upcoming.length) occ.append(el("span", "", a.paused ? "paused" : "no more occurrences"));
    card.append(head, occ);
    out.append(card);
  }
}

function schedForm() {
  return {
    name: $("#sched-name").value.trim(),
    rrule: $("#sched-rrule").value.trim(),
    start: $("#sched-start").value.trim(),
    tz: $("#sched-tz").value.trim(),
    action: { kind: "ask", message: $("#sched-ask").value.trim() },
  };
}

// ---- jobs ----------------------------------------------------------------------------------

async function loadJobs() {
  const [stats, nodes, jobs] = await Promise.all([api("/api/jobs/stats"), api("/api/nodes"), api("/api/jobs?limit=50")]);
  renderStats(stats);
  const nr = $("#node-rows");
  nr.replaceChildren();
  if (!nodes.length) { const tr = el("tr"); const td = el("td", "muted", "No worker nodes yet: start one with `zocalo worker`."); td.colSpan = 6; tr.append(td); nr.append(tr); }
  for (const n of nodes) {
    const tr = el("tr");
    const st = el("td"); st.append(el("span", `pill ${n.state}`, n.state));
    tr.append(el("td", "mono", n.id), el("td", "", n.hostname), st, el("td", "", `${n.running}/${n.capacity}`), el("td", "", n.labels.join(", ")), el("td", "", fmtTime(n.last_seen)));
    nr.append(tr);
  }
  const jr = $("#job-rows");
  jr.replaceChildren();
  if (!jobs.length) { const tr = el("tr"); const td = el("td", "muted", "No jobs yet."); td.colSpan = 7; tr.append(td); jr.append(tr); }
  for (const j of jobs) {
    const tr = el("tr");
    const st = el("td"); st.append(el("span", `pill ${j.state}`, j.state));
    const act = el("td");
    if (j.state === "queued" || j.state === "running") {
      const b = el("button", "small", "Cancel");
      b.addEventListener("click", async () => { await api(`/api/jobs/${encodeURIComponent(j.id)}/cancel`, { body: {} }); loadJobs(); });
      act.append(b);
    }
    tr.append(el("td", "mono", j.id), el("td", "", j.kind), st, el("td", "", `${j.attempts}/${j.max_attempts}`), el("td", "mono", j.node || "—"), el("td", "", fmtTime(j.created_at)), act);
    jr.append(tr);
  }
}

function renderStats(s) {
  const out = $("#job-stats");
  out.replaceChildren();
  for (const k of ["queued", "running", "succeeded", "failed", "dead", "cancelled"]) {
    const d = el("div", "stat");
    d.append(el("div", "n", String(s[k] ?? 0)), el("div", "l", k));
    out.append(d);
  }
}

// ---- agents and services (when the build has them) -----------------------------------------

async function loadAgents() {
  const out = $("#agent-batches");
  out.replaceChildren();
  try {
    const batches = await api("/api/agents/batches");
    if (!batches.length) out.append(el("div", "muted", "No agent batches yet."));
    for (const b of batches) {
      const card = el("div");
      const head = el("div", "sched-head");
      const left = el("div");
      left.append(el("div", "name", b.id), el("div", "rule", `${b.runner} · ${b.provider || "default"}${b.model ? "/" + b.model : ""} · concurrency ${b.concurrency} · ${fmtTime(b.created_at)}`));
      const right = el("div");
      right.append(el("span", `pill ${b.error ? "failed" : b.pending ? "running" : "succeeded"}`, b.state), document.createTextNode(` ${b.ok}/${b.total} ok`));
      if (b.state === "running") {
        const stop = el("button", "small", "cancel");
        stop.addEventListener("click", async (e) => {
          e.stopPropagation();
          try { await api(`/api/agents/batches/${encodeURIComponent(b.id)}/cancel`, { body: {} }); } catch (err) { $("#agents-spawn-out").textContent = err.message; }
          loadAgents();
        });
        right.append(document.createTextNode(" "), stop);
      }
      head.append(left, right);
      card.append(head);
      card.addEventListener("click", async () => {
        const d = await api(`/api/agents/batches/${encodeURIComponent(b.id)}`);
        if (card.querySelector(".agents")) return;
        const list = el("div", "agents occurrences");
        for (const a of d.agents) list.append(el("span", "", `${a.id}: ${a.status}${a.elapsed_ms != null ? " · " + a.elapsed_ms + " ms" : ""}`));
        card.append(list);
      });
      out.append(card);
    }
  } catch (e) { out.append(el("div", "error", e.message)); }
}

async function loadServices() {
  const out = $("#service-list");
  out.replaceChildren();
  try {
    const services = await api("/api/services");
    if (!services.length) out.append(el("div", "muted", "No services yet: add one with `zocalo services add`."));
    for (const s of services) {
      const card = el("div");
      const head = el("div", "sched-head");
      const left = el("div");
      left.append(el("div", "name", s.name), el("div", "rule", s.cmd || s.command || ""));
      const right = el("div");
      right.append(el("span", `pill ${s.state}`, s.state), document.createTextNode(" "));
      for (const action of ["start", "stop", "restart"]) {
        const b = el("button", "small", action);
        b.addEventListener("click", async () => { await api(`/api/services/${encodeURIComponent(s.name)}/${action}`, { body: {} }); loadServices(); });
        right.append(b, document.createTextNode(" "));
      }
      const logs = el("button", "small", "logs");
      logs.addEventListener("click", async () => {
        const l = await api(`/api/services/${encodeURIComponent(s.name)}/logs?lines=200`);
        const pre = $("#service-logs");
        pre.textContent = Array.isArray(l.lines) ? l.lines.join("\n") : (l.text || JSON.stringify(l, null, 2));
        pre.classList.remove("hidden");
      });
      right.append(logs);
      head.append(left, right);
      card.append(head);
      out.append(card);
    }
  } catch (e) { out.append(el("div", "error", e.message)); }
}

// ---- live events ---------------------------------------------------------------------------

async function startEvents() {
  if (eventsAbort) eventsAbort.abort();
  eventsAbort = new AbortController();
  const live = $("#live");
  try {
    const r = await api("/api/events", { raw: true, signal: eventsAbort.signal });
    live.classList.add("on");
    await readSse(r, (name, data) => {
      const page = (location.hash || "#chat").slice(1);
      if (name === "stats" && page === "jobs") renderStats(data);
      if (name === "job" && page === "jobs") loadJobs().catch(() => {});
      if ((name === "schedule" || name === "run") && page === "schedules") loadSchedules().catch(() => {});
      if (name === "service" && page === "services") loadServices().catch(() => {});
    });
  } catch (_) { /* aborted or dropped */ }
  live.classList.remove("on");
  if (token && !eventsAbort.signal.aborted) setTimeout(startEvents, 3000);
}

// ---- wiring --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#token").value); });
  $("#signout").addEventListener("click", () => signOut(""));
  $("#new-chat").addEventListener("click", () => { currentConv = null; clearThread(); loadChat(); });
  $("#composer").addEventListener("submit", (e) => { e.preventDefault(); const t = $("#message").value; $("#message").value = ""; send(t); });
  $("#message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("#composer").requestSubmit(); }
  });
  $("#memory-search").addEventListener("submit", (e) => { e.preventDefault(); searchMemory(); });
  $("#memory-add").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("#memory-text").value.trim();
    if (!text) return;
    const scope = $("#memory-scope").value.trim();
    await api("/api/memory", { body: scope ? { text, scope } : { text } });
    $("#memory-text").value = "";
    loadMemory();
  });
  $("#sched-preview").addEventListener("click", async () => {
    const f = schedForm();
    try {
      const times = await api("/api/schedules/preview", { body: { rrule: f.rrule, start: f.start, tz: f.tz, limit: 5 } });
      $("#sched-preview-out").textContent = "Next: " + times.map(fmtTime).join(" · ");
    } catch (err) { $("#sched-preview-out").textContent = err.message; }
  });
  $("#sched-add").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/schedules", { body: schedForm() });
      $("#sched-preview-out").textContent = "";
      loadSchedules();
    } catch (err) { $("#sched-preview-out").textContent = err.message; }
  });
  $("#agents-spawn").addEventListener("submit", async (e) => {
    e.preventDefault();
    const prompts = $("#agents-prompts").value.split("\n").map((l) => l.trim()).filter(Boolean);
    if (!prompts.length) return;
    const tasks = prompts.map((prompt, i) => ({ id: String(i + 1), prompt }));
    try {
      const r = await api("/api/agents/spawn-all", { body: { tasks, concurrency: Number($("#agents-concurrency").value) || 4 } });
      $("#agents-prompts").value = "";
      $("#agents-spawn-out").textContent = `Started ${r.batch_id} (${r.total} agents).`;
      loadAgents();
      // Follow it until every agent has ended.
      const follow = async () => {
        const d = await api(`/api/agents/batches/${encodeURIComponent(r.batch_id)}`);
        if ((location.hash || "#chat").slice(1) !== "agents") return;
        loadAgents();
        if (d.state === "running") setTimeout(follow, 1000);
      };
      setTimeout(follow, 1000);
    } catch (err) { $("#agents-spawn-out").textContent = err.message; }
  });
  window.addEventListener("hashchange", route);
  if (token) signIn(token); else showSignIn("");
});
