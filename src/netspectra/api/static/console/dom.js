// Small DOM helpers shared by the views.

import { int, keyText, shownValue, time } from "./format.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

/** A numeric cell: the exact integer shown with separators, the raw value in data-value. */
export function numCell(v, extra = {}) {
  return el("td", { class: "num", dataset: { value: String(v) }, ...extra }, int(v));
}

export function timeCell(ns) {
  return el("td", { class: "time", dataset: { value: String(ns) } }, time(ns));
}

/** A cell for a key value; addresses link to the host page, values to a drill-down when given. */
export function keyCell(field, value, { hostLink, drill } = {}) {
  const td = el("td", { dataset: { field, value: value === null ? "" : String(value) } });
  if (value === null || value === undefined) {
    td.append(keyText(value));
    return td;
  }
  if (hostLink && field.endsWith("IP")) {
    td.append(el("a", { href: hostLink(String(value)), class: "host" }, String(value)));
  } else {
    td.append(shownValue(field, value));
  }
  if (drill) {
    td.append(" ", el("button", { type: "button", class: "drill", title: `filter on ${field} = ${value}`,
      onclick: () => drill(field, value) }, "+"));
  }
  return td;
}

export function table(tableEl, heads, rows) {
  tableEl.replaceChildren();
  const head = el("tr");
  for (const h of heads) head.append(typeof h === "string" ? el("th", {}, h) : h);
  tableEl.append(el("thead", {}, head));
  const body = el("tbody");
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: String(heads.length) }, "nothing here")));
  }
  for (const r of rows) body.append(r);
  tableEl.append(body);
  return tableEl;
}

/** A literal of the filter language for a value of a field of the given kind. */
export function literal(kind, value) {
  if (kind === "string") return `'${String(value).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  return String(value);
}
