// Flows: the flows of the current source, filter and range, sortable by any column, paged.

import { get } from "./api.js";
import { $, el, keyCell, literal, numCell, table, timeCell } from "./dom.js";
import { int } from "./format.js";

const PAGE = 50;
const NUMERIC = new Set(["Packets", "Bytes"]);
const TIMES = new Set(["FirstSeen", "LastSeen"]);

export function setup(ctx) {
  $("flows-prev").addEventListener("click", () => {
    const offset = Math.max(0, Number(ctx.state().offset) - PAGE);
    ctx.go({ offset: String(offset) });
  });
  $("flows-next").addEventListener("click", () => ctx.go({ offset: String(Number(ctx.state().offset) + PAGE) }));
}

/** The request of this view: [path, params]. */
export function request(ctx) {
  const { state, source, range } = ctx;
  return ["/api/v1/console/flows", {
    source: source.id,
    axis: state.axis,
    start: range.start,
    end: range.end,
    filter: state.filter,
    sort: state.sort,
    order: state.order,
    offset: state.offset,
    limit: PAGE,
  }];
}

export async function render(ctx) {
  const { state, source } = ctx;
  const doc = await get(...request(ctx));
  const kinds = Object.fromEntries(source.fields.map((f) => [f.name, f.kind]));
  const drill = (field, value) => {
    const cond = `${field} = ${literal(kinds[field] || "string", value)}`;
    ctx.go({ filter: state.filter ? `(${state.filter}) AND ${cond}` : cond, offset: "0" });
  };
  const heads = doc.columns.map((c) => {
    const active = c === doc.sort;
    const arrow = active ? (doc.descending ? " ▼" : " ▲") : "";
    const order = active && doc.descending ? "asc" : "desc";
    const th = el("th", { class: NUMERIC.has(c) ? "num" : null, dataset: { column: c } });
    th.append(el("a", { href: "#", onclick: (ev) => {
      ev.preventDefault();
      ctx.go({ sort: c, order, offset: "0" });
    } }, c + arrow));
    return th;
  });
  const rows = doc.rows.map((r) => {
    const cells = r.map((v, i) => {
      const c = doc.columns[i];
      if (NUMERIC.has(c)) return numCell(v);
      if (TIMES.has(c)) return timeCell(v);
      if (c in kinds) return keyCell(c, v, { hostLink: ctx.hostLink, drill });
      return el("td", { dataset: { field: c, value: v === null ? "" : String(v) } }, v === null ? "—" : String(v));
    });
    return el("tr", { class: "row" }, ...cells);
  });
  table($("flows-table"), heads, rows);
  const first = Number(doc.offset) + 1;
  $("flows-pos").textContent = doc.rows.length ? `rows ${int(first)}–${int(first + doc.rows.length - 1)}` : "no rows";
  $("flows-prev").disabled = Number(doc.offset) === 0;
  $("flows-next").disabled = !doc.more;
  const what = source.kind === "records"
    ? "One row per flow record."
    : "One row per flow and aggregation period (flow_metrics). The flow records of a flows task, with their " +
      "state, flags and end reason, are the flows: sources once the store has a flows table.";
  $("flows-note").textContent = `${what} Time axis: ${doc.axisMeaning}. ${doc.elapsedMs} ms.`;
  return doc;
}
