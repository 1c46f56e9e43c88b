// NetSpectra web dashboard: plain JavaScript, no build step, no third-party code.
// Reads the same endpoints as Grafana: POST /metrics (the targets), POST /query (series and tables).
// With tokens configured (api.auth) the server answers 401: the page then asks for a token, keeps it in
// this tab's sessionStorage (gone when the tab closes) and sends it as "Authorization: Bearer …" —
// never in a URL.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "netspectra.token";
const state = { targets: [], timer: null, busy: false, started: false };
const $ = (id) => document.getElementById(id);
const fmt = (n) => Number(n).toLocaleString("en-US");

class AuthError extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function post(path, body) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const res = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
  const doc = await res.json();
  if (res.status === 401) throw new AuthError(doc.message || "this server needs a token");
  if (!res.ok) throw new Error(`${path}: ${doc.code || res.status}: ${doc.message || ""}`);
  return doc;
}

function askForToken(message) {
  clearInterval(state.timer);
  $("auth").hidden = false;
  $("sign-out").hidden = true;
  $("status").className = "error";
  $("status").textContent = token() ? `the token was refused: ${message}` : "this server needs a token";
  $("token").focus();
}

function showError(err) {
  if (err instanceof AuthError) return askForToken(err.message);
  $("status").className = "error";
  $("status").textContent = String(err.message || err);
}

function range() {
  const v = $("range").value;
  const to = Date.now();
  return { from: v === "all" ? 0 : to - Number(v) * 1000, to };
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// stepMs (the rollup series' step): a point more than one step after the one before starts a new line,
// as the steps between had no traffic (a straight line across them drew traffic that was not there)
function drawChart(fig, datapoints, stepMs) {
  const svg = fig.querySelector("svg");
  svg.replaceChildren();
  const latest = fig.querySelector(".latest");
  fig.dataset.points = String(datapoints.length);
  if (!datapoints.length) {
    latest.textContent = "";
    latest.removeAttribute("data-value");
    svg.append(svgEl("text", { x: 10, y: 20 }, "no data in this range"));
    return;
  }
  const last = datapoints[datapoints.length - 1];
  latest.textContent = fmt(last[0]);
  latest.dataset.value = String(last[0]);
  latest.dataset.time = String(last[1]);
  const W = svg.clientWidth || 400, H = svg.clientHeight || 180;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const L = 60, R = 10, T = 10, B = 22;
  const xs = datapoints.map((p) => p[1]), ys = datapoints.map((p) => p[0]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 30000; x1 += 30000; }
  const y1 = Math.max(...ys, 1);
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => H - B - (y / y1) * (H - T - B);
  for (const f of [0, 0.5, 1]) {
    const y = py(y1 * f);
    svg.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
    svg.append(svgEl("text", { x: L - 4, y: y + 3, "text-anchor": "end" }, fmt(Math.round(y1 * f))));
  }
  svg.append(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (const x of [x0, x1]) {
    const label = new Date(x).toISOString().replace("T", " ").slice(0, 19);
    svg.append(svgEl("text", { x: px(x), y: H - 6, "text-anchor": x === x0 ? "start" : "end" }, label));
  }
  const d = datapoints.map((p, i) => {
    const joined = i && !(stepMs && p[1] - datapoints[i - 1][1] > stepMs);
    return `${joined ? "L" : "M"}${px(p[1]).toFixed(1)},${py(p[0]).toFixed(1)}`;
  });
  svg.append(svgEl("path", { class: "line", d: d.join(" ") }));
  for (const p of datapoints) {
    const c = svgEl("circle", { class: "dot", cx: px(p[1]), cy: py(p[0]), r: 3 });
    c.append(svgEl("title", {}, `${new Date(p[1]).toISOString()}: ${fmt(p[0])}`));
    svg.append(c);
  }
}

function fillTable(tableEl, answer) {
  tableEl.replaceChildren();
  const head = el("tr");
  answer.columns.forEach((c) => head.append(el("th", c.type === "number" ? { class: "num" } : {}, c.text)));
  tableEl.appendChild(el("thead")).append(head);
  const body = tableEl.appendChild(el("tbody"));
  if (!answer.rows.length) {
    const td = el("td", { class: "empty", colspan: answer.columns.length }, "nothing in this range");
    body.appendChild(el("tr")).append(td);
    return;
  }
  for (const row of answer.rows) {
    const tr = body.appendChild(el("tr", { class: "row" }));
    row.forEach((v, i) => {
      const num = answer.columns[i].type === "number";
      tr.append(el("td", num ? { class: "num", "data-value": String(v) } : {}, num ? fmt(v) : String(v)));
    });
  }
}

function sketchTables(container, targets) {
  // one <table> per target, created once and refilled on every refresh
  for (const t of targets) {
    if (!container.querySelector(`table[data-target="${CSS.escape(t)}"]`)) {
      const card = container.appendChild(el("div", { class: "card" }));
      card.append(el("h3", {}, t), el("table", { "data-target": t }));
    }
  }
  if (!targets.length) container.replaceChildren(el("p", { class: "empty" }, "no such sketch task configured"));
}

async function loadTargets() {
  const metrics = await post("/metrics", {});
  state.targets = metrics.map((m) => m.value);
  const tasks = state.targets.filter((t) => t.endsWith(":top")).map((t) => t.slice(0, -4));
  const select = $("task");
  const wanted = new URLSearchParams(location.search).get("task");
  select.replaceChildren(...tasks.map((t) => el("option", { value: t }, t)));
  if (wanted && tasks.includes(wanted)) select.value = wanted;
  // rollup tasks: traffic over the packets' own time (a stored 2019 capture shows its 2019 minutes)
  const rollups = state.targets
    .filter((t) => t.startsWith("rollup:") && t.endsWith(":bytes"))
    .map((t) => t.slice("rollup:".length, -":bytes".length));
  const rollupSelect = $("rollup-task");
  const wantedRollup = new URLSearchParams(location.search).get("rollup");
  rollupSelect.replaceChildren(...rollups.map((t) => el("option", { value: t }, t)));
  if (wantedRollup && rollups.includes(wantedRollup)) rollupSelect.value = wantedRollup;
  $("timeline").hidden = !rollups.length;
  sketchTables($("hitter-tables"), state.targets.filter((t) => t.endsWith(":count") || t.endsWith(":size")));
  sketchTables($("spreader-tables"), state.targets.filter((t) => t.endsWith(":spread")));
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  const status = $("status");
  try {
    const task = $("task").value;
    const sketch = [...document.querySelectorAll("table[data-target]")].map((t) => t.dataset.target);
    const targets = [];
    if (task) {
      ["packets", "bytes", "flows"].forEach((m) => targets.push({ target: `${task}:${m}`, refId: m }));
      targets.push({ target: `${task}:top`, refId: "top", payload: { limit: 10 } });
      sketch.forEach((t) => targets.push({ target: t, refId: t, payload: { limit: 10 } }));
    }
    const rollup = $("rollup-task").value;
    if (rollup) {
      // no intervalMs: the server spreads the points over the range's traffic (its own time)
      ["packets", "bytes"].forEach((m) => targets.push({ target: `rollup:${rollup}:${m}`, refId: `r-${m}` }));
    }
    const answer = targets.length ? await post("/query", { range: range(), targets, maxDataPoints: 500 }) : [];
    for (const a of answer) {
      if (a.target.startsWith("rollup:")) {
        const metric = a.target.slice(a.target.lastIndexOf(":") + 1);
        const stepMs = a.meta ? a.meta.step_s * 1000 : undefined;
        drawChart(document.querySelector(`figure[data-rollup="${metric}"]`), a.datapoints, stepMs);
        if (a.meta) {
          $("rollup-table").textContent = `${a.meta.step_s} s steps from ${a.meta.table}`;
          $("rollup-table").title = a.meta.reason;
        }
      } else if (a.type === "table") {
        const tableEl = a.target.endsWith(":top")
          ? $("top-table")
          : document.querySelector(`table[data-target="${CSS.escape(a.target)}"]`);
        fillTable(tableEl, a);
      } else {
        const metric = a.target.slice(a.target.lastIndexOf(":") + 1);
        drawChart(document.querySelector(`figure[data-metric="${metric}"]`), a.datapoints);
      }
    }
    status.className = "";
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.updated = String(Date.now());
  } catch (err) {
    showError(err);
  } finally {
    state.busy = false;
  }
}

function schedule() {
  clearInterval(state.timer);
  const s = Number($("refresh").value);
  if (s > 0) state.timer = setInterval(refresh, s * 1000);
}

async function start() {
  try {
    await loadTargets();
  } catch (err) {
    showError(err);
    return;
  }
  $("auth").hidden = true;
  $("sign-out").hidden = !token();
  if (!state.started) {
    state.started = true;
    for (const id of ["task", "range", "rollup-task"]) $(id).addEventListener("change", refresh);
    $("refresh").addEventListener("change", schedule);
  }
  await refresh();
  schedule();
}

// A URL preset the picker has no option for: a range of N seconds gets an option of its own, refresh
// "off" is 0, anything else keeps the default (such a value left the picker blank, and a blank range
// asked for [now, now]: "no data in this range" for a store full of traffic).
function preset(id, value) {
  if (!value) return;
  const select = $(id);
  if (id === "refresh" && value === "off") value = "0";
  if (![...select.options].some((o) => o.value === value)) {
    if (id !== "range" || !/^[1-9][0-9]{0,9}$/.test(value)) return;
    select.append(new Option(`last ${Number(value).toLocaleString("en")} s`, value));
  }
  select.value = value;
}

function main() {
  const params = new URLSearchParams(location.search);
  preset("range", params.get("range"));
  preset("refresh", params.get("refresh"));
  $("auth").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("status").className = "";
    $("status").textContent = "loading…";
    start();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  start();
}

main();
