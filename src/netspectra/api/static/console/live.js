// Live: the newest aggregation period of an exact task as its newest stored snapshot shows it, read
// again every few seconds; the rates between the two newest snapshots, the busiest flows since the
// previous snapshot and in the whole period, and a line of the rates seen by this page.

import { get } from "./api.js";
import { sparkline } from "./charts.js";
import { $, el, keyCell, numCell, table } from "./dom.js";
import { int, si, span, time } from "./format.js";

const history = { source: "", bytes: [], packets: [] };
let timer = null;

export function setup(ctx) {
  $("live-refresh").addEventListener("change", () => ctx.go({ refresh: $("live-refresh").value }, { replace: true }));
}

export function stop() {
  clearTimeout(timer);
  timer = null;
}

function flowsTable(id, doc, rows, ctx) {
  const t = el("table", { class: "data", id });
  const heads = [...doc.columns];
  return table(t, heads, rows.map((r) => el("tr", { class: "row" }, ...r.map((v, i) => {
    const c = doc.columns[i];
    return i < doc.columns.length - 4 ? keyCell(c, v, { hostLink: ctx.hostLink }) : numCell(v);
  }))));
}

/** The request of this view: [path, params]. */
export function request(ctx) {
  return ["/api/v1/console/live", { source: ctx.source.id, limit: 10, exact: ctx.state.exact }];
}

export async function render(ctx) {
  stop();
  const { state, source } = ctx;
  $("live-refresh").value = state.refresh;
  if (history.source !== source.id) Object.assign(history, { source: source.id, bytes: [], packets: [] });
  const doc = await get(...request(ctx));
  const body = $("live-body");
  if (doc.snapshot === null) {
    body.replaceChildren(el("p", { class: "note" }, `${source.id} has no stored snapshot yet.`));
  } else {
    const age = Date.now() * 1e6 - doc.snapshot;
    const parts = [
      el("p", { class: "note", id: "live-when" },
        `Period started ${time(doc.period, false)} UTC; newest snapshot ${time(doc.snapshot, false)} UTC ` +
        `(${span(Math.max(0, age))} ago)` + (doc.previous !== null ? `, the one before ${time(doc.previous, false)}.` : ".") +
        (doc.sample > 1 ? ` Estimate from 1/${doc.sample} of the flows.` : "")),
    ];
    const totals = el("table", { class: "data", id: "live-totals" });
    table(totals, ["", "packets", "bytes", "flows"], [
      el("tr", { class: "row", dataset: { what: "period" } }, el("td", {}, "this period"),
        numCell(doc.totals.packets), numCell(doc.totals.bytes), numCell(doc.totals.flows)),
    ]);
    parts.push(totals);
    if (doc.rates.seconds) {
      history.bytes.push(doc.rates.bytes);
      history.packets.push(doc.rates.packets);
      if (history.bytes.length > 120) history.bytes.shift();
      parts.push(el("p", { id: "live-rates", dataset: { bytes: String(doc.rates.bytes), packets: String(doc.rates.packets) } },
        `Since the previous snapshot (${span(doc.rates.seconds * 1e9)}): ${si(doc.rates.bytes * 8, "bit/s")}, ` +
        `${si(doc.rates.packets, "p/s")}, ${int(doc.rates.flows)} active flows.`));
      const spark = el("div", { class: "spark" });
      parts.push(spark);
      queueMicrotask(() => sparkline(spark, history.bytes, { unit: "B/s" }));
      parts.push(el("h3", {}, "Busiest since the previous snapshot"), flowsTable("live-by-rate", doc, doc.byRate, ctx));
    } else {
      parts.push(el("p", { class: "note" }, "One snapshot in this period so far: rates appear with the next one."));
    }
    parts.push(el("h3", {}, "Busiest in the period"), flowsTable("live-by-total", doc, doc.byTotal, ctx));
    body.replaceChildren(...parts);
  }
  const every = Number(state.refresh);
  if (every > 0) timer = setTimeout(() => ctx.refresh(), every * 1000);
  return doc;
}
