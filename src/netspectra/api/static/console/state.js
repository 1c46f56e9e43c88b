// The console's state lives in the URL: /console/<view>?source=…&range=…&filter=…, so a view can be
// shared and the back button walks through what was shown. Only values other than the defaults are
// written.

export const VIEWS = ["visualize", "flows", "host", "alerts", "live"];

export const DEFAULTS = {
  view: "visualize",
  source: "",
  range: "all",
  start: "",
  end: "",
  axis: "first",
  filter: "",
  dims: "DstPort",
  metric: "bytes",
  unit: "total",
  limit: "10",
  chart: "stacked",
  exact: "",
  resolution: "auto",
  sort: "Bytes",
  order: "desc",
  offset: "0",
  ip: "",
  refresh: "5",
};

const KEYS = Object.keys(DEFAULTS).filter((k) => k !== "view");

/** The state the current URL describes. */
export function read(loc = window.location) {
  const state = { ...DEFAULTS };
  const parts = loc.pathname.split("/").filter(Boolean);
  if (parts[0] === "console" && VIEWS.includes(parts[1])) state.view = parts[1];
  const q = new URLSearchParams(loc.search);
  for (const k of KEYS) if (q.has(k)) state[k] = q.get(k);
  return state;
}

/** The URL of a state (path + query). */
export function url(state) {
  const q = new URLSearchParams();
  for (const k of KEYS) if (state[k] !== undefined && state[k] !== DEFAULTS[k]) q.set(k, state[k]);
  const text = q.toString();
  return `/console/${state.view}${text ? `?${text}` : ""}`;
}

/** Show ``state``: a new history entry (push) unless it is the current URL, or a replacement. */
export function go(state, { replace = false } = {}) {
  const target = url(state);
  const current = window.location.pathname + window.location.search;
  if (target === current) return false;
  if (replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  return true;
}

const UNITS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/**
 * The range a state asks for as {start, end} in epoch ms (either may be null = the data's own extent):
 * "all" → both null; "-1h" → the hour before now; "abs" → the absolute start/end (UTC text).
 */
export function rangeOf(state, now = Date.now()) {
  if (state.range === "abs") {
    const ms = (text) => (text ? Date.parse(text.endsWith("Z") ? text : `${text}Z`) : NaN);
    const s = ms(state.start);
    const e = ms(state.end);
    return { start: Number.isFinite(s) ? s : null, end: Number.isFinite(e) ? e : null };
  }
  const m = /^-(\d+)([smhdw])$/.exec(state.range || "");
  if (m) return { start: now - Number(m[1]) * UNITS[m[2]] * 1000, end: now };
  return { start: null, end: null };
}
