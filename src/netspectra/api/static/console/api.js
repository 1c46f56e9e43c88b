// The console's requests: GET /api/v1/console/* (and the REST alerts), JSON answers.
// With tokens configured (api.auth) the server answers 401: the page asks for a token and keeps it in
// this tab's sessionStorage under the dashboard's key (one sign-in serves both pages; gone when the tab
// closes); it travels as "Authorization: Bearer …", never in a URL.

export const TOKEN_KEY = "netspectra.token";

export class AuthError extends Error {}

/** An error answer of the API: code (gRPC status name), message, and for a filter position/expected. */
export class ApiError extends Error {
  constructor(path, doc, status) {
    super(`${doc.code || status}: ${doc.message || ""}`);
    this.path = path;
    this.code = doc.code || String(status);
    this.detail = doc;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  early.clear(); // answers asked for with the former token
}

function urlOf(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") query.set(k, String(v));
  }
  return query.toString() ? `${path}?${query}` : path;
}

// requests started before they were asked for (prefetch), by URL: the first get() of the same URL takes it
const early = new Map();

/** Start GET path?params now; the first get() of the same path and params takes its answer (or error). */
export function prefetch(path, params = {}) {
  const url = urlOf(path, params);
  const answer = fetchJson(url);
  answer.catch(() => {}); // an answer nobody takes is no page error; the one who takes it sees the error
  early.set(url, answer);
}

/** GET path?params (params: an object; null/undefined/"" values are left out) → the parsed JSON. */
export async function get(path, params = {}, { signal } = {}) {
  const url = urlOf(path, params);
  const started = early.get(url);
  if (started) {
    early.delete(url);
    return started;
  }
  return fetchJson(url, signal);
}

async function fetchJson(url, signal) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const res = await fetch(url, { headers, signal });
  let doc;
  try {
    doc = await res.json();
  } catch {
    doc = { code: String(res.status), message: res.statusText };
  }
  if (res.status === 401) throw new AuthError(doc.message || "this server needs a token");
  if (!res.ok) throw new ApiError(url.split("?")[0], doc, res.status);
  return doc;
}
