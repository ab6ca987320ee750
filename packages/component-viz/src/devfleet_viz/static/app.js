// devfleet live fleet view. Plain JS, no dependencies, no build step.
// Everything from the wire reaches the DOM through textContent or setAttribute of
// checked values: never innerHTML. The server sends one snapshot, then deltas.
"use strict";

const HEALTHS = ["online", "stale", "lost", "offline", "unknown"];
const COUNT_REASON = {
  online: "heartbeating",
  stale: "no heartbeat for 3 intervals, no will",
  lost: "will: connection died",
  offline: "clean stop",
  unknown: "no status / malformed",
};
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#a371f7", "#39c5cf", "#ff7b72", "#e3b341"];
const SPARK_METRICS = ["cpu", "memory", "disk"];
const KEEP_POINTS = 300, KEEP_SPARK = 60, KEEP_LOGS = 500, KEEP_TRAIL = 300, PAGE_ROWS = 100;
const HEX = /^#[0-9a-fA-F]{6}$/;

const S = {
  nodes: {}, series: {}, maps: {}, poses: {}, trails: {}, receipts: [], detail: null,
  offset: 0, access: { readonly: true, token_required: false }, focus: undefined, filter: "", health: "", page: 0,
};
const stats = { frames: [], deltas: 0, bytes: 0, seen: {} };
window.__viz = stats;  // read by the tests and the benchmark (frame times, status seen at)

let token = sessionStorage.getItem("devfleet-viz-token") || "";
(function takeToken() {
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    token = params.get("token");
    sessionStorage.setItem("devfleet-viz-token", token);
    history.replaceState(null, "", location.pathname + location.hash);
  }
})();

// ---- small DOM helpers (text only) ------------------------------------------------

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);  // CSSOM: the CSP forbids style attributes
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : String(kid));
  return node;
}
const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
const safeHealth = (h) => (HEALTHS.includes(h) ? h : "unknown");
const safeColor = (c, fallback) => (typeof c === "string" && HEX.test(c) ? c : fallback);
const now = () => Date.now() / 1000 + S.offset;
function age(ts) {
  if (typeof ts !== "number") return "—";
  const s = Math.max(0, now() - ts);
  return s < 120 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`;
}
// Why a node is stale: the console's stale_reason, its silence re-aged every tick
// (the row is sent once when the node turns stale, the seconds keep counting here).
function staleReason(row) {
  if (typeof row.last_heard !== "number" || typeof row.interval !== "number") return String(row.stale_reason || row.reason || "stale");
  const last = Math.max(row.last_heard, typeof row.heartbeat_at === "number" ? row.heartbeat_at : 0);
  return `no heartbeat for ${age(last)} (every ${row.interval} s expected)`;
}
const reasonOf = (row) => (row.health === "stale" ? staleReason(row) : row.reason || "");
const clock = (ts) => (typeof ts === "number" ? new Date(ts * 1000).toLocaleTimeString() : "--:--:--");
const short = (v, n) => { const s = typeof v === "string" ? v : JSON.stringify(v); return s && s.length > n ? s.slice(0, n) + "…" : (s ?? ""); };

// ---- the stream ---------------------------------------------------------------------

let source = null;
function connect() {
  if (source) source.close();
  const q = S.focus ? `?node=${encodeURIComponent(S.focus)}` : "";
  source = new EventSource(`/api/stream${q}`);
  source.addEventListener("snapshot", (ev) => timed(() => applySnapshot(JSON.parse(ev.data)), ev.data.length));
  source.addEventListener("delta", (ev) => timed(() => applyDelta(JSON.parse(ev.data)), ev.data.length));
  source.onopen = () => setConn("live", true);
  source.onerror = () => setConn("reconnecting…", false);
}
function setConn(text, live) {
  const c = document.getElementById("conn");
  c.textContent = text;
  c.classList.toggle("live", live);
}
function timed(fn, bytes) {
  const t0 = performance.now();
  fn();
  render();
  const dt = performance.now() - t0;
  stats.frames.push(dt);
  if (stats.frames.length > 5000) stats.frames.splice(0, 1000);
  stats.deltas += 1;
  stats.bytes += bytes;
}

function applySnapshot(snap) {
  S.offset = snap.now - Date.now() / 1000;
  S.access = snap.access || S.access;
  S.nodes = snap.nodes || {};
  S.series = {};
  for (const [node, metrics] of Object.entries(snap.spark || {})) S.series[node] = metrics;
  S.maps = snap.maps || {};
  S.poses = snap.poses || {};
  S.trails = snap.trails || {};
  S.receipts = snap.receipts || [];
  S.detail = snap.focus || null;
  if (S.detail) S.series[S.detail.node] = S.detail.series;
  for (const [name, row] of Object.entries(S.nodes)) noteHealth(name, row.health, snap.now);
  dirty.all = true;
  const mode = document.getElementById("mode");
  mode.textContent = S.access.readonly ? "read-only: commands are refused" : (S.access.token_required && !token ? "no token: commands will be refused" : "");
}

function noteHealth(name, health, sentAt) {
  // at: when the page applied it; sent: the server's clock when it sent the frame
  const seen = stats.seen[name];
  if (!seen || seen.health !== health) stats.seen[name] = { health, at: Date.now() / 1000, sent: sentAt };
}

function applyDelta(d) {
  S.offset = d.now - Date.now() / 1000;
  if (d.nodes) for (const [name, row] of Object.entries(d.nodes)) { S.nodes[name] = row; noteHealth(name, row.health, d.now); dirty.rows.add(name); }
  if (d.removed) for (const name of d.removed) { delete S.nodes[name]; delete S.series[name]; dirty.all = true; }
  if (d.hb) for (const [name, ts] of Object.entries(d.hb)) { if (S.nodes[name]) S.nodes[name].heartbeat_at = ts; }
  if (d.points) {
    for (const [name, metrics] of Object.entries(d.points)) {
      const keep = S.detail && S.detail.node === name ? KEEP_POINTS : KEEP_SPARK;
      const mine = (S.series[name] = S.series[name] || {});
      for (const [metric, point] of Object.entries(metrics)) {
        let pts = (mine[metric] = mine[metric] || []);
        if (pts.length && point[0] < pts[pts.length - 1][0]) pts = mine[metric] = [];  // the node's clock went back
        if (pts.length && pts[pts.length - 1][0] === point[0]) pts[pts.length - 1] = point;
        else pts.push(point);
        if (pts.length > keep) pts.splice(0, pts.length - keep);
      }
      dirty.sparks.add(name);
    }
  }
  if (d.maps) { for (const [m, f] of Object.entries(d.maps)) { if (f) S.maps[m] = f; else delete S.maps[m]; } dirty.map = true; }
  if (d.poses) {
    for (const [m, poses] of Object.entries(d.poses)) {
      const mine = (S.poses[m] = S.poses[m] || {});
      const trails = (S.trails[m] = S.trails[m] || {});
      for (const [node, pose] of Object.entries(poses)) {
        mine[node] = pose;
        const t = (trails[node] = trails[node] || []);
        const p = [pose.x, pose.y];
        if (!t.length || t[t.length - 1][0] !== p[0] || t[t.length - 1][1] !== p[1]) t.push(p);
        if (t.length > KEEP_TRAIL) t.splice(0, t.length - KEEP_TRAIL);
      }
    }
    dirty.map = true;
  }
  if (d.receipts) { S.receipts.push(...d.receipts); if (S.receipts.length > 200) S.receipts.splice(0, S.receipts.length - 200); dirty.receipts = true; }
  if (d.detail && S.detail) {
    const det = S.detail;
    if (d.detail.logs) { det.logs.push(...d.detail.logs); if (det.logs.length > KEEP_LOGS) det.logs.splice(0, det.logs.length - KEEP_LOGS); dirty.logs = d.detail.logs; }
    if (d.detail.raw) { Object.assign(det.raw, d.detail.raw); dirty.raw = true; }
    if (d.detail.components) { for (const [c, leaves] of Object.entries(d.detail.components)) det.components[c] = Object.assign(det.components[c] || {}, leaves); dirty.components = true; }
    if (d.detail.cfg) { det.cfg_history.push(...d.detail.cfg); dirty.cfg = true; }
  }
}

// ---- rendering ------------------------------------------------------------------------

const dirty = { all: true, rows: new Set(), sparks: new Set(), map: false, receipts: false, logs: null, raw: false, components: false, cfg: false };
let view = null;  // what #main shows: {kind, ...element refs}

function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/node\/(.+)$/);
  const focus = m ? decodeURIComponent(m[1]) : null;
  const kind = m ? "node" : hash === "#/map" ? "map" : "fleet";
  const refocus = focus !== S.focus;
  S.focus = focus;
  view = null;
  document.getElementById("main").replaceChildren();
  if (refocus) { S.detail = null; connect(); }
  view = { kind };
  dirty.all = true;
  render();
}

function render() {
  renderCounts();
  if (!view) return;
  if (view.kind === "fleet") renderFleet();
  else if (view.kind === "node") renderNode();
  else renderMapPage();
  dirty.all = false; dirty.rows.clear(); dirty.sparks.clear(); dirty.map = false; dirty.receipts = false;
  dirty.logs = null; dirty.raw = false; dirty.components = false; dirty.cfg = false;
}

function renderCounts() {
  const counts = Object.fromEntries(HEALTHS.map((h) => [h, 0]));
  for (const row of Object.values(S.nodes)) counts[safeHealth(row.health)] += 1;
  const box = document.getElementById("counts");
  if (!box.children.length) {
    for (const h of HEALTHS) {
      box.append(el("div", { class: `count ${h}`, "data-health": h, onclick: () => { S.health = S.health === h ? "" : h; location.hash = "#/"; dirty.all = true; render(); } },
        el("b", { "data-count": h }, "0"), `${h} `, el("small", {}, COUNT_REASON[h])));
    }
  }
  for (const h of HEALTHS) box.querySelector(`[data-count="${h}"]`).textContent = String(counts[h]);
}

// ---- fleet table --------------------------------------------------------------------

function matches(row) {
  if (S.health && safeHealth(row.health) !== S.health) return false;
  if (!S.filter) return true;
  const hay = [row.node, row.version, row.description, row.hostname, ...(row.groups || []), ...Object.keys(row.components || {}), ...Object.keys(row.actors || {})].join(" ").toLowerCase();
  return S.filter.toLowerCase().split(/\s+/).every((w) => hay.includes(w));
}

function renderFleet() {
  const main = document.getElementById("main");
  if (!view.table) {
    const search = el("input", { type: "search", placeholder: "search name, group, component, version…", id: "search", size: "40" });
    search.value = S.filter;
    search.addEventListener("input", () => { S.filter = search.value; S.page = 0; dirty.all = true; render(); });
    const health = el("select", { id: "health-filter" }, el("option", { value: "" }, "any health"), ...HEALTHS.map((h) => el("option", { value: h }, h)));
    health.addEventListener("change", () => { S.health = health.value; S.page = 0; dirty.all = true; render(); });
    const pager = el("span", { class: "pager" });
    const tbody = el("tbody");
    const table = el("table", { id: "nodes" }, el("thead", {}, el("tr", {}, ...["node", "health", "heartbeat", "version", "groups", "components", "actors", "cpu", "memory", "disk"].map((h) => el("th", {}, h)))), tbody);
    main.replaceChildren(el("div", { class: "toolbar" }, search, health, pager), table, el("div", { id: "fleet-map" }));
    view.table = tbody; view.pager = pager; view.health = health; view.rows = new Map();
  }
  view.health.value = S.health;
  if (dirty.all || dirty.rows.size) rebuildRows();
  for (const [name, r] of view.rows) {
    const row = S.nodes[name];
    if (!row) continue;
    r.hb.textContent = age(row.heartbeat_at);
    if (row.health === "stale") r.reason.textContent = staleReason(row);
    if (dirty.all || dirty.sparks.has(name)) for (const m of SPARK_METRICS) drawSpark(r[m], (S.series[name] || {})[m]);
  }
  const mapBox = document.getElementById("fleet-map");
  if (mapBox && Object.keys(S.maps).length && (dirty.all || dirty.map)) renderMaps(mapBox);
}

function rebuildRows() {
  const names = Object.keys(S.nodes).filter((n) => matches(S.nodes[n])).sort();
  const pages = Math.max(1, Math.ceil(names.length / PAGE_ROWS));
  S.page = Math.min(S.page, pages - 1);
  const shown = names.slice(S.page * PAGE_ROWS, (S.page + 1) * PAGE_ROWS);
  view.pager.replaceChildren(
    el("button", { onclick: () => { S.page = Math.max(0, S.page - 1); dirty.all = true; render(); } }, "‹"),
    ` ${names.length ? S.page * PAGE_ROWS + 1 : 0}–${S.page * PAGE_ROWS + shown.length} of ${names.length} `,
    el("button", { onclick: () => { S.page = Math.min(pages - 1, S.page + 1); dirty.all = true; render(); } }, "›"));
  const same = shown.length === view.rows.size && shown.every((n) => view.rows.has(n));
  if (!same || dirty.all) {
    view.rows = new Map();
    view.table.replaceChildren(...shown.map((n) => { const r = makeRow(n); view.rows.set(n, r); return r.tr; }));
  } else {
    for (const n of dirty.rows) if (view.rows.has(n)) { const r = makeRow(n); view.rows.get(n).tr.replaceWith(r.tr); view.rows.set(n, r); }
  }
}

function makeRow(name) {
  const row = S.nodes[name];
  const h = safeHealth(row.health);
  const chips = (obj) => Object.entries(obj || {}).map(([k, v]) => el("span", { class: `chip ${typeof v === "string" ? v.replace(/[^a-z_]/g, "") : ""}`, title: String(v ?? "") }, `${k}${v ? ": " + v : ""}`));
  const r = { hb: el("td", { class: "hb" }), reason: el("span", { class: "reason" }, reasonOf(row)) };
  for (const m of SPARK_METRICS) r[m] = svg("svg", { class: "spark", viewBox: "0 0 80 18", preserveAspectRatio: "none" });
  const nameCell = el("td", {}, el("a", { href: `#/node/${encodeURIComponent(name)}`, class: "node-link" }, name));
  if (row.malformed) nameCell.append(" ", el("span", { class: "bad", title: "a retained description is malformed" }, `⚠ ${row.malformed} malformed`));
  if (row.description) nameCell.append(el("div", { class: "dim desc" }, short(row.description, 80)));
  r.tr = el("tr", { "data-node": name, "data-health": h },
    nameCell,
    el("td", {}, el("span", { class: `health ${h}` }, h), " ", r.reason),
    r.hb,
    el("td", {}, row.version || "—"),
    el("td", {}, (row.groups || []).join(", ")),
    el("td", {}, ...chips(row.components)),
    el("td", {}, ...chips(row.actors)),
    el("td", {}, r.cpu), el("td", {}, r.memory), el("td", {}, r.disk));
  return r;
}

function drawSpark(box, pts) {
  box.replaceChildren();
  if (!pts || pts.length < 2) return;
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0] || t0 + 1;
  const path = pts.map(([t, v], i) => `${i ? "L" : "M"}${(((t - t0) / (t1 - t0 || 1)) * 80).toFixed(1)},${(18 - (Math.min(100, Math.max(0, v)) / 100) * 17).toFixed(1)}`).join("");
  box.append(svg("path", { d: path, fill: "none", stroke: "#58a6ff", "stroke-width": "1.2" }));
  const last = pts[pts.length - 1][1];
  const title = svg("title", {}); title.textContent = `${last.toFixed(1)}`; box.append(title);
}

// ---- node page -------------------------------------------------------------------------

function renderNode() {
  const main = document.getElementById("main");
  const det = S.detail;
  const name = S.focus;
  if (!det || det.node !== name) { main.replaceChildren(el("p", { class: "dim" }, `loading ${name}…`)); view.built = false; return; }
  if (!view.built) buildNode(main, det);
  const row = S.nodes[name];
  if (row) {
    const h = safeHealth(row.health);
    view.health.className = `health ${h}`; view.health.textContent = h;
    view.reason.textContent = `${reasonOf(row)} · heartbeat ${age(row.heartbeat_at)} ago · config v${row.config_version ?? "?"}`;
  }
  if (dirty.all || dirty.sparks.has(name)) drawPlots();
  if (dirty.all || dirty.receipts) renderReceipts();
  if (dirty.all) renderLogs(det.logs, true); else if (dirty.logs) renderLogs(dirty.logs, false);
  if (dirty.all || dirty.raw) renderRaw();
  if (dirty.all || dirty.components || dirty.rows.has(name)) renderComponents();
  if (dirty.all || dirty.cfg || dirty.rows.has(name)) renderConfig();
}

function buildNode(main, det) {
  const name = det.node;
  view.health = el("span", { class: "health" });
  view.reason = el("span", { class: "reason" });
  view.plots = el("div");
  view.receipts = el("div", { id: "receipts" });
  view.logs = el("div", { class: "logs", id: "logs" });
  view.follow = el("input", { type: "checkbox", checked: "", id: "follow" });
  view.raw = el("div", { id: "raw" });
  view.components = el("div", { id: "components" });
  view.actors = el("div", { id: "actors" });
  view.config = el("div", { id: "config" });
  const meta = det.meta || {};
  const buttons = el("div", { class: "toolbar", id: "commands" });
  for (const verb of ["ping", "rebirth", "restart"]) buttons.append(el("button", { "data-verb": verb, onclick: () => send({ node: name, verb }) }, verb));
  const cmdComp = el("select", { id: "comp-cmd" });
  for (const [comp, cmds] of Object.entries(det.component_commands || {})) for (const c of cmds) cmdComp.append(el("option", { value: JSON.stringify([comp, c]) }, `${comp} · ${c}`));
  const cmdArgs = el("input", { id: "comp-args", placeholder: "args as JSON, e.g. {\"effect\": \"rainbow\"}", size: "36" });
  if (cmdComp.children.length) {
    buttons.append(" component: ", cmdComp, cmdArgs, el("button", { id: "comp-run", onclick: () => {
      let args = {};
      try { args = cmdArgs.value.trim() ? JSON.parse(cmdArgs.value) : {}; } catch (e) { S.receipts.push({ id: "-", node: name, verb: "component", state: "error", code: "invalid", message: "args are not JSON" }); renderReceipts(); return; }
      const [component, command] = JSON.parse(cmdComp.value);
      send({ node: name, component, command, args });
    } }, "run"));
  }
  if (S.access.readonly) for (const b of buttons.querySelectorAll("button")) b.disabled = true;
  main.replaceChildren(
    el("h2", {}, name, " ", view.health, " ", view.reason),
    el("div", { class: "dim", id: "meta-line" }, `${meta.hostname || ""} · agent ${meta.agent_version || meta.devfleet_version || "?"} · python ${meta.python || "?"} · `, el("span", { id: "description" }, short(meta.description || "", 200))),
    el("div", { class: "panel" }, el("h3", {}, "commands"), buttons, view.receipts),
    el("div", { class: "panel" }, el("h3", {}, "telemetry ", el("a", { href: `/api/nodes/${encodeURIComponent(name)}/telemetry.csv`, id: "csv", download: `${name}-telemetry.csv` }, "CSV")), view.plots),
    el("div", { class: "grid" },
      el("div", { class: "panel" }, el("h3", {}, "components"), view.components),
      el("div", { class: "panel" }, el("h3", {}, "actors"), view.actors)),
    el("div", { class: "panel" }, el("h3", {}, "logs ", el("label", {}, view.follow, " follow")), view.logs),
    el("div", { class: "panel" }, el("h3", {}, "config"), view.config),
    el("div", { class: "panel" }, el("h3", {}, "raw retained descriptions"), view.raw));
  view.built = true;
}

async function send(body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const resp = await fetch("/api/command", { method: "POST", headers, body: JSON.stringify(body) });
    const out = await resp.json();
    if (!resp.ok) S.receipts.push({ id: "-", node: body.node, verb: body.verb || body.command, state: "error", code: out.error, message: out.message, ts: now() });
  } catch (e) {
    S.receipts.push({ id: "-", node: body.node, verb: body.verb || body.command, state: "error", code: "unreachable", message: String(e), ts: now() });
  }
  dirty.receipts = true; render();
}

function renderReceipts() {
  if (!view.receipts) return;
  const latest = new Map(), trail = new Map();  // per command: its last receipt, every state seen
  for (const r of S.receipts) {
    if (r.node !== S.focus) continue;
    const key = r.id === "-" ? Math.random() : r.id;
    latest.set(key, r);
    trail.set(key, [...(trail.get(key) || []), String(r.state)]);
  }
  const rows = [...latest.entries()].slice(-12).reverse();
  view.receipts.replaceChildren(...rows.map(([key, r]) => el("div", { class: "receipt", "data-state": r.state, "data-verb": r.verb, "data-states": trail.get(key).join(" ") },
    `${clock(r.ts)} ${r.verb} `, trail.get(key).length > 1 ? el("span", { class: "dim" }, trail.get(key).slice(0, -1).join(" → ") + " → ") : "",
    el("span", { class: `chip ${String(r.state).replace(/[^a-z_]/g, "")}` }, r.state),
    r.code ? ` ${r.code}` : "", r.message ? ` — ${short(r.message, 200)}` : "", r.result !== null && r.result !== undefined ? ` → ${short(r.result, 200)}` : "")));
}

function drawPlots() {
  const series = S.series[S.focus] || {};
  const metrics = Object.keys(series).sort();
  const groups = [metrics.filter((m) => SPARK_METRICS.includes(m)), metrics.filter((m) => !SPARK_METRICS.includes(m))].filter((g) => g.length);
  if (!view.canvases || view.canvases.key !== groups.map((g) => g.join(",")).join("|")) {
    view.canvases = groups.map((g) => ({ metrics: g, canvas: el("canvas", { class: "plot" }) }));
    view.canvases.key = groups.map((g) => g.join(",")).join("|");
    view.plots.replaceChildren(...(view.canvases.length ? view.canvases.flatMap((c) => [c.canvas, el("div", { class: "legend" }, ...c.metrics.map((m, i) => el("span", { style: { color: COLORS[i % COLORS.length] } }, `■ ${m}`)))]) : [el("p", { class: "dim" }, "no telemetry yet")]));
  }
  for (const c of view.canvases) plot(c.canvas, c.metrics.map((m) => series[m] || []));
}

function plot(canvas, lines) {
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 180, dpr = window.devicePixelRatio || 1;
  if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  let t0 = Infinity, t1 = -Infinity, v0 = Infinity, v1 = -Infinity;
  for (const pts of lines) for (const [t, v] of pts) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); v0 = Math.min(v0, v); v1 = Math.max(v1, v); }
  if (!isFinite(t0)) return;
  v0 = Math.min(0, v0); if (v1 <= v0) v1 = v0 + 1; if (t1 <= t0) t1 = t0 + 1;
  const x = (t) => 36 + ((t - t0) / (t1 - t0)) * (w - 44), y = (v) => h - 16 - ((v - v0) / (v1 - v0)) * (h - 24);
  g.strokeStyle = "#2a333d"; g.fillStyle = "#8a96a3"; g.font = "10px sans-serif";
  for (let i = 0; i <= 4; i++) { const v = v0 + ((v1 - v0) * i) / 4; g.beginPath(); g.moveTo(36, y(v)); g.lineTo(w - 8, y(v)); g.stroke(); g.fillText(v.toFixed(v1 - v0 < 10 ? 1 : 0), 2, y(v) + 3); }
  g.fillText(clock(t0), 36, h - 3); g.fillText(clock(t1), w - 60, h - 3);
  lines.forEach((pts, i) => {
    g.strokeStyle = COLORS[i % COLORS.length]; g.lineWidth = 1.5; g.beginPath();
    pts.forEach(([t, v], j) => (j ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
    g.stroke();
  });
}

function logLine(l) {
  return el("div", { class: `lvl-${String(l.level).replace(/[^A-Z]/g, "")}` }, `${clock(l.ts)} ${l.level} ${l.logger}: ${l.msg}`);
}
function renderLogs(lines, replace) {
  if (replace) view.logs.replaceChildren(...lines.map(logLine));
  else view.logs.append(...lines.map(logLine));
  while (view.logs.childElementCount > KEEP_LOGS) view.logs.firstElementChild.remove();
  if (view.follow.checked) view.logs.scrollTop = view.logs.scrollHeight;
}

function kv(obj) {
  return el("table", {}, el("tbody", {}, ...Object.entries(obj || {}).map(([k, v]) => el("tr", { "data-key": k }, el("td", { class: "dim" }, k), el("td", {}, cell(v))))));
}
function cell(v) {
  // A list of records (the ROS bridge's per-topic rates) reads best as a table.
  if (Array.isArray(v) && v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
    const cols = [...new Set(v.slice(0, 50).flatMap((x) => Object.keys(x)))].slice(0, 12);
    return el("table", { class: "records" }, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...v.slice(0, 50).map((x) => el("tr", {}, ...cols.map((c) => el("td", { "data-col": c }, short(x[c] ?? "", 80)))))));
  }
  return short(v, 300);
}
function leds(colors) {
  return el("div", { class: "leds", "data-leds": "" }, ...colors.slice(0, 256).map((c) => el("span", { style: { background: safeColor(c, "#000000") }, "data-color": safeColor(c, "#000000") })));
}

function renderComponents() {
  const det = S.detail;
  const states = det.component_states || {};
  const row = S.nodes[det.node] || {};
  const names = new Set([...Object.keys(states), ...Object.keys(det.components || {}), ...Object.keys(row.components || {})]);
  const parts = [];
  for (const c of [...names].sort()) {
    const st = states[c] || {};
    const pubs = det.components[c] || {};
    const live = row.components ? row.components[c] : st.state;
    const box = el("div", { "data-component": c }, el("b", {}, c), " ", el("span", { class: `chip ${String(live || "").replace(/[^a-z_]/g, "")}` }, live || "?"));
    if (st.last_error) box.append(" ", el("span", { class: "bad" }, short(st.last_error, 200)));
    const reported = Object.assign({}, st.reported || {}, (pubs.state && typeof pubs.state === "object") ? pubs.state : {});
    const preview = pubs.preview && Array.isArray(pubs.preview.pixels) ? pubs.preview.pixels : null;
    if (preview) box.append(leds(preview));
    else if (Array.isArray(reported.pixels)) box.append(leds(reported.pixels));
    else if (typeof reported.color === "string" && HEX.test(reported.color)) box.append(leds([reported.color]));
    if (Object.keys(reported).length) box.append(kv(reported));
    for (const [leaf, value] of Object.entries(pubs)) if (leaf !== "state" && leaf !== "preview") box.append(el("div", { class: "dim" }, `${leaf}: ${short(value, 300)}`));
    parts.push(box);
  }
  view.components.replaceChildren(...(parts.length ? parts : [el("p", { class: "dim" }, "none")]));
  const actors = det.actors || {};
  view.actors.replaceChildren(Object.keys(actors).length ? el("table", {}, el("tbody", {}, ...Object.entries(actors).map(([n, a]) => el("tr", { "data-actor": n },
    el("td", {}, n), el("td", {}, el("span", { class: `chip ${String(a.state || "").replace(/[^a-z_]/g, "")}` }, a.state || "?")),
    el("td", { class: "dim" }, `restarts ${a.restarts ?? 0}/${a.max_restarts ?? "?"}`), el("td", { class: "bad" }, short(a.last_error || "", 200)))))) : el("p", { class: "dim" }, "none"));
}

function renderConfig() {
  const det = S.detail;
  const history = det.cfg_history || [];
  const current = history.length ? history[history.length - 1] : null;
  const items = history.slice().reverse().map((h, i, all) => {
    const prev = all[i + 1];
    const changed = prev ? diffKeys(prev.config, h.config) : [];
    return el("div", { "data-version": String(h.version) }, `v${h.version} at ${clock(h.ts)}`, changed.length ? el("span", { class: "dim" }, ` changed: ${changed.join(", ")}`) : "");
  });
  view.config.replaceChildren(
    el("div", { id: "config-version" }, current ? `version ${current.version}` : "no config reported"),
    el("div", { class: "grid" }, el("pre", {}, current ? JSON.stringify(current.config, null, 2) : ""), el("div", {}, el("b", {}, "history (seen by this view)"), ...items)));
}
function diffKeys(a, b, prefix = "") {
  const out = [];
  const keys = new Set([...Object.keys(a || {}), ...Object.keys(b || {})]);
  for (const k of keys) {
    const x = (a || {})[k], y = (b || {})[k];
    if (x && y && typeof x === "object" && typeof y === "object" && !Array.isArray(x)) out.push(...diffKeys(x, y, `${prefix}${k}.`));
    else if (JSON.stringify(x) !== JSON.stringify(y)) out.push(prefix + k);
  }
  return out;
}

function renderRaw() {
  const raw = S.detail.raw || {};
  view.raw.replaceChildren(...Object.keys(raw).sort().map((topic) => {
    const r = raw[topic];
    const verdict = ["ok", "malformed", "truncated", "cleared"].includes(r.verdict) ? r.verdict : "malformed";
    const box = el("details", { "data-topic": topic, "data-verdict": verdict },
      el("summary", {}, topic, " ", el("span", { class: `verdict ${verdict}` }, verdict), ` ${r.bytes} bytes`, r.cut ? " (shown cut)" : "", r.reason ? ` — ${r.reason}` : ""),
      el("pre", {}, r.text));
    box.open = verdict !== "ok";  // problems open, the rest folded
    return box;
  }));
}

// ---- maps ---------------------------------------------------------------------------

function renderMapPage() {
  const main = document.getElementById("main");
  if (!view.box) { view.box = el("div", { id: "maps" }); main.replaceChildren(view.box); }
  if (dirty.all || dirty.map) renderMaps(view.box);
}

function renderMaps(box) {
  const names = Object.keys(S.maps).sort();
  if (!names.length) { box.replaceChildren(el("p", { class: "dim" }, "no map published (maps/{map})")); return; }
  box.replaceChildren(...names.map((name) => mapPanel(name, S.maps[name])));
}

function mapPanel(name, entry) {
  const panel = el("div", { class: "panel", "data-map": name }, el("h3", {}, `map ${name}`));
  if (!entry || !entry.frame) { panel.append(el("p", { class: "bad" }, entry ? entry.problem : "no frame")); return panel; }
  const f = entry.frame;
  const W = Math.max(f.width, 0.001), H = Math.max(f.height, 0.001);
  const s = svg("svg", { class: "map", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "xMidYMid meet" });
  const flip = svg("g", { transform: `translate(0 ${H}) scale(1 -1)` });
  const unit = Math.max(W, H) / 100;
  flip.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#10161c", stroke: "#2a333d", "stroke-width": unit / 4 }));
  for (const r of f.regions || []) {
    const rect = svg("rect", { x: Math.min(r.x0, r.x1), y: Math.min(r.y0, r.y1), width: Math.abs(r.x1 - r.x0), height: Math.abs(r.y1 - r.y0), fill: safeColor(r.color, "#30363d"), "fill-opacity": "0.35" });
    const t = svg("title", {}); t.textContent = r.name; rect.append(t); flip.append(rect);
  }
  for (const [x, y] of (f.items || []).slice(0, 10000)) flip.append(svg("circle", { cx: x, cy: y, r: unit * 0.6, fill: "#e3b341", class: "item" }));
  const trails = S.trails[name] || {};
  const poses = S.poses[name] || {};
  for (const [node, pts] of Object.entries(trails)) {
    if (pts.length < 2) continue;
    const color = safeColor((poses[node] || {}).color, "#8a96a3");
    flip.append(svg("polyline", { points: pts.map((p) => `${p[0]},${p[1]}`).join(" "), fill: "none", stroke: color, "stroke-opacity": "0.45", "stroke-width": unit / 3, class: "trail", "data-node": node }));
  }
  const labels = [];
  for (const [node, p] of Object.entries(poses)) {
    const color = safeColor(p.color, "#58a6ff");
    const g = svg("g", { class: "robot", "data-node": node, transform: `translate(${p.x} ${p.y})` });
    g.append(svg("circle", { r: unit * 1.6, fill: color, stroke: "#000", "stroke-width": unit / 5 }));
    g.append(svg("line", { x1: 0, y1: 0, x2: Math.cos(p.theta || 0) * unit * 2.6, y2: Math.sin(p.theta || 0) * unit * 2.6, stroke: "#fff", "stroke-width": unit / 2.5 }));
    flip.append(g);
    const text = svg("text", { x: p.x + unit * 2, y: H - p.y - unit * 2, fill: "#d6dde4", "font-size": unit * 2.6 });
    text.textContent = `${node}${p.label ? " · " + p.label : ""}`;
    labels.push(text);
  }
  s.append(flip, ...labels);
  panel.append(s, el("div", { class: "dim" }, `${f.width} m × ${f.height} m · ${Object.keys(poses).length} on the map · ${(f.items || []).length} items`));
  return panel;
}

// ---- start ----------------------------------------------------------------------------

window.addEventListener("hashchange", route);
setInterval(() => { if (view && view.kind !== "map") render(); }, 1000);  // heartbeat ages tick
route();
