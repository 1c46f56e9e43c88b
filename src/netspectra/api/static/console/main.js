// NetSpectra console: plain ES modules, no build step, nothing fetched from outside this server.
// main: the token, the catalog, the shared controls (source, range, axis, filter), and the router that
// shows the view the URL names (history.pushState; the back button re-renders the previous state).

import { AuthError, get, prefetch, setToken, token } from "./api.js";
import * as alerts from "./alerts.js";
import { $, el } from "./dom.js";
import { FilterInput, showFilterError } from "./filter.js";
import * as flows from "./flows.js";
import * as host from "./host.js";
import * as live from "./live.js";
import { DEFAULTS, go, rangeOf, read, url, VIEWS } from "./state.js";
import * as visualize from "./visualize.js";

const MODULES = { visualize, flows, host, alerts, live };
const app = { catalog: null, state: read(), busy: 0, generation: 0 };

function status(text, cls = "") {
  $("status").className = cls;
  $("status").textContent = text;
}

function askForToken(message) {
  $("auth").hidden = false;
  $("sign-out").hidden = true;
  status(token() ? `the token was refused: ${message}` : "this server needs a token", "error");
  $("token").focus();
}

// the catalog this tab saw last: the page asks for its view's answer with it while the catalog is asked for
const SEEN_CATALOG = "netspectra.console.catalog";

function sourceOf(catalog, state) {
  return catalog.sources.find((s) => s.id === state.source) || catalog.sources[0];
}

function source() {
  return sourceOf(app.catalog, app.state);
}

/** The axis a state shows on a source: its own if the source has it, else the source's first. */
function axisOf(src, state) {
  return src.axes.some((a) => a.id === state.axis) ? state.axis : src.axes[0].id;
}

/** Start the request of the URL's view with the catalog this tab saw last, while the catalog is asked for:
 * if the catalog is unchanged, the view's request is the same URL and takes this answer (api.prefetch). */
function prefetchView() {
  let seen = null;
  try {
    seen = JSON.parse(sessionStorage.getItem(SEEN_CATALOG) || "null");
  } catch {
    return;
  }
  const s = app.state;
  const module = MODULES[s.view];
  if (!seen || !seen.sources || !seen.sources.length || !module || !module.request) return;
  const src = sourceOf(seen, s);
  const req = module.request({ state: { ...s, axis: axisOf(src, s) }, source: src, catalog: seen, range: rangeOf(s) });
  if (req) prefetch(...req);
}

/** The URL of a state (a partial one over the current state). */
function urlOf(partial) {
  return url({ ...app.state, ...partial });
}

function hostLink(ip) {
  return urlOf({ view: "host", ip, offset: "0" });
}

/** Move to a new state (a partial update): a history entry, then draw it. */
function navigate(partial, opts = {}) {
  const next = { ...app.state, ...partial };
  if (partial.source !== undefined || partial.filter !== undefined || partial.range !== undefined) {
    if (partial.offset === undefined) next.offset = "0";
  }
  go(next, opts);
  app.state = read();
  draw();
}

function fillShared() {
  const s = app.state;
  const sel = $("source");
  // a rollup task's source is read from the coarsest rollup table that answers, whichever it is
  sel.replaceChildren(...app.catalog.sources.map((x) =>
    el("option", { value: x.id }, x.kind === "rollup" ? `${x.task} (rollups)` : `${x.task || x.table} (${x.table})`)));
  const src = source();
  sel.value = src.id;
  $("axis").replaceChildren(...src.axes.map((a) =>
    el("option", { value: a.id, title: a.meaning }, a.id !== "first" ? "stored time (snapshots)" : src.kind === "rollup" ? "traffic time (rollup buckets)" : "traffic time (first packet)")));
  $("axis").value = axisOf(src, s);
  const axis = src.axes.find((a) => a.id === $("axis").value);
  $("axis-note").textContent = `Time axis: ${axis.meaning}.`;
  $("range").value = s.range;
  $("absolute").hidden = s.range !== "abs";
  $("start").value = s.start;
  $("end").value = s.end;
  if (document.activeElement !== $("filter")) $("filter").value = s.filter;
  const absent = app.catalog.tables.filter((t) => !t.present);
  $("tables-note").textContent = absent.length
    ? `Not in this store yet: ${absent.map((t) => `${t.name} (${t.holds})`).join("; ")}. Views use what is there.`
    : "";
  for (const a of document.querySelectorAll("#views a[data-view]")) {
    a.classList.toggle("active", a.dataset.view === s.view);
    a.href = urlOf({ view: a.dataset.view });
    // a rollup source holds traffic per bucket and dimensions, not flows: the flow views say so when asked
    const flowView = ["flows", "host", "live"].includes(a.dataset.view);
    a.classList.toggle("unavailable", src.kind === "rollup" && flowView);
    a.title = src.kind === "rollup" && flowView ? `${src.id} holds no flows: pick a flow source for this view` : "";
  }
}

async function draw() {
  const generation = ++app.generation;
  const s = app.state;
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.view !== s.view;
  if (s.view !== "live") live.stop();
  document.body.dataset.view = s.view;
  if (!app.catalog) return;
  if (!app.catalog.sources.length) {
    status("this store has no flow data yet: fill it with `netspectra analyze FILE --store` or an engine", "error");
    return;
  }
  fillShared();
  const src = source();
  const ctx = {
    state: { ...s, axis: $("axis").value },
    source: src,
    catalog: app.catalog,
    range: rangeOf(s),
    go: navigate,
    urlOf,
    hostLink,
    refresh: () => generation === app.generation && draw(),
  };
  const started = performance.now();
  status("loading…");
  try {
    showFilterError($("filter-error"), s.filter, null);
    await MODULES[s.view].render(ctx);
    if (generation !== app.generation) return;
    status(`updated ${new Date().toISOString().slice(11, 19)} UTC (${Math.round(performance.now() - started)} ms)`);
    document.body.dataset.updated = String(Date.now());
  } catch (err) {
    if (generation !== app.generation) return;
    if (err instanceof AuthError) return askForToken(err.message);
    if (err.detail && err.detail.position !== undefined) showFilterError($("filter-error"), s.filter, err.detail);
    status(String(err.message || err), "error");
    document.body.dataset.failed = String(Date.now());
  }
}

async function start() {
  prefetchView();
  try {
    app.catalog = await get("/api/v1/console/catalog");
    try {
      sessionStorage.setItem(SEEN_CATALOG, JSON.stringify(app.catalog));
    } catch {
      // storage full or off: the next page asks in turn
    }
  } catch (err) {
    if (err instanceof AuthError) return askForToken(err.message);
    status(String(err.message || err), "error");
    return;
  }
  $("auth").hidden = true;
  $("sign-out").hidden = !token();
  await draw();
}

function wire() {
  $("source").addEventListener("change", () => navigate({ source: $("source").value }));
  $("axis").addEventListener("change", () => navigate({ axis: $("axis").value }));
  $("range").addEventListener("change", () => {
    const range = $("range").value;
    if (range === "abs") {
      $("absolute").hidden = false;
      const now = new Date();
      if (!$("start").value) $("start").value = new Date(now - 3600e3).toISOString().slice(0, 19);
      if (!$("end").value) $("end").value = now.toISOString().slice(0, 19);
      return;
    }
    navigate({ range, start: "", end: "" });
  });
  $("apply-range").addEventListener("click", () =>
    navigate({ range: "abs", start: $("start").value, end: $("end").value }));
  const filter = new FilterInput($("filter"), $("completion"), $("filter-error"), () => source().id,
    (text) => navigate({ filter: text }));
  $("apply-filter").addEventListener("click", () => filter.apply().catch((err) => status(String(err.message || err), "error")));
  const ctxFor = { state: () => app.state, go: navigate };
  for (const m of Object.values(MODULES)) if (m.setup) m.setup({ ...ctxFor, go: navigate });
  window.addEventListener("popstate", () => {
    app.state = read();
    draw();
  });
  $("auth").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    setToken(value);
    status("loading…");
    start();
  });
  $("sign-out").addEventListener("click", () => {
    setToken("");
    location.reload();
  });
}

// the bare /console shows the default view
if (!VIEWS.includes(location.pathname.split("/").filter(Boolean)[1])) {
  history.replaceState(null, "", url({ ...DEFAULTS, ...app.state }));
}
wire();
start();
