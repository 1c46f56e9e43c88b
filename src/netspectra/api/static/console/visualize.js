// Visualize: top-N combinations of up to three dimensions over time, with "other" and the total; stacked
// areas, lines, a grid of small charts or a sankey; a table of the same numbers.

import { get } from "./api.js";
import { gridChart, OTHER_COLOR, PALETTE, sankeyChart, timeChart } from "./charts.js";
import { $, el, keyCell, literal, numCell, table } from "./dom.js";
import { int, si, span } from "./format.js";

const UNIT = { bytes: "B", packets: "p", flows: "" };

export function setup(ctx) {
  for (const id of ["dim-0", "dim-1", "dim-2"]) {
    $(id).addEventListener("change", () => {
      const dims = ["dim-0", "dim-1", "dim-2"].map((d) => $(d).value).filter(Boolean);
      ctx.go({ dims: [...new Set(dims)].join(",") });
    });
  }
  for (const id of ["metric", "unit", "chart", "resolution"]) $(id).addEventListener("change", () => ctx.go({ [id]: $(id).value }));
  $("limit").addEventListener("change", () => ctx.go({ limit: $("limit").value }));
  $("exact").addEventListener("change", () => ctx.go({ exact: $("exact").checked ? "1" : "" }));
}

function fillControls(ctx) {
  const { state, source } = ctx;
  const dims = state.dims.split(",").filter(Boolean);
  ["dim-0", "dim-1", "dim-2"].forEach((id, i) => {
    const sel = $(id);
    const opts = [el("option", { value: "" }, i === 0 ? "(nothing: total)" : "—")];
    for (const f of source.fields) opts.push(el("option", { value: f.name }, f.name));
    sel.replaceChildren(...opts);
    sel.value = source.fields.some((f) => f.name === dims[i]) ? dims[i] : "";
  });
  $("metric").value = state.metric;
  $("unit").value = state.unit;
  $("limit").value = state.limit;
  $("chart").value = state.chart;
  $("exact").checked = state.exact === "1";
  $("resolution").querySelector("option[value=full]").disabled = source.kind === "rollup";
  $("resolution").value = resolutionOf(source, state);
}

/** The resolution a state asks of a source: a rollup task's source is read from its rollup tables only
 * (no full resolution there: the coarsest that answers instead). */
function resolutionOf(source, state) {
  return source.kind === "rollup" && state.resolution === "full" ? "auto" : state.resolution;
}

export function label(key, dims) {
  return dims.map((d) => (key[d] === null || key[d] === undefined ? "—" : String(key[d]))).join(" · ");
}

function dimsOf(ctx) {
  const have = new Set(ctx.source.fields.map((f) => f.name));
  return ctx.state.dims.split(",").filter((d) => have.has(d));
}

/** The request of this view: [path, params]. */
export function request(ctx) {
  const { state, source, range } = ctx;
  const dims = dimsOf(ctx);
  return ["/api/v1/console/visualize", {
    source: source.id,
    axis: state.axis,
    start: range.start,
    end: range.end,
    dims: dims.join(","),
    metric: state.metric,
    limit: state.limit,
    filter: state.filter,
    exact: state.exact,
    resolution: resolutionOf(source, state),
    points: 120,
  }];
}

export async function render(ctx) {
  fillControls(ctx);
  const { state, source } = ctx;
  const dims = dimsOf(ctx);
  const doc = await get(...request(ctx));
  const metric = doc.metric;
  const rate = state.unit === "rate";
  const stepS = doc.step / 1e9;
  const scale = (arr) => (rate ? arr.map((v) => v / stepS) : arr);
  const unit = UNIT[metric] + (rate ? "/s" : "");
  const series = doc.series.map((s, i) => ({
    label: dims.length ? label(s.key, dims) : "total",
    key: s.key,
    color: PALETTE[i % PALETTE.length],
    values: scale(s.values[metric]),
    total: s[metric],
    raw: s,
  }));
  if (doc.other[metric] > 0 || doc.other.packets > 0) {
    series.push({ label: "Other", key: null, color: OTHER_COLOR, values: scale(doc.other.values[metric]),
      total: doc.other[metric], raw: doc.other });
  }
  const box = $("viz-chart");
  if (state.chart === "sankey") {
    const rows = series.map((s) => ({
      values: s.key ? dims.map((d) => String(s.key[d])) : dims.map(() => "Other"),
      weight: s.total,
      color: s.color,
    }));
    sankeyChart(box, { dims, rows, unit: UNIT[metric] });
  } else if (state.chart === "grid") {
    gridChart(box, { times: doc.times, step: doc.step, series, unit });
  } else {
    timeChart(box, { times: doc.times, step: doc.step, series, stacked: state.chart !== "lines", unit });
  }
  box.dataset.metric = metric;
  box.dataset.unit = state.unit;
  // the table: every series, Other and the total, with the three metrics, the share and the rates
  const heads = ["", ...(dims.length ? dims : ["series"]), "packets", "bytes", "flows", `% of ${metric}`,
    `avg ${UNIT[metric]}/s`, `peak ${UNIT[metric]}/s`];
  const total = doc.total[metric] || 0;
  const rows = [];
  const drill = (field, value) => {
    const f = source.fields.find((x) => x.name === field);
    const cond = `${field} = ${literal(f ? f.kind : "string", value)}`;
    ctx.go({ filter: state.filter ? `(${state.filter}) AND ${cond}` : cond });
  };
  const row = (s, cls) => {
    const values = s.raw.values[metric];
    const secs = (doc.times.length * doc.step) / 1e9 || 1;
    const avg = s.raw[metric] / secs;
    const peak = Math.max(0, ...values) / stepS;
    const cells = [el("td", {}, el("span", { class: "swatch", style: `background:${s.color || "transparent"}` }))];
    if (s.key && dims.length) dims.forEach((d) => cells.push(keyCell(d, s.key[d], { hostLink: ctx.hostLink, drill })));
    else cells.push(el("td", { colspan: String(Math.max(dims.length, 1)), class: "label" }, s.label));
    // flows are null in an answer from a rollup table: a rollup row is not a flow
    const flows = s.raw.flows === null ? el("td", { class: "num", title: "not counted by the rollups" }, "—") : numCell(s.raw.flows);
    cells.push(numCell(s.raw.packets), numCell(s.raw.bytes), flows);
    cells.push(el("td", { class: "num" }, total ? `${((100 * s.raw[metric]) / total).toFixed(1)} %` : "—"));
    cells.push(el("td", { class: "num" }, si(avg, UNIT[metric] + "/s")), el("td", { class: "num" }, si(peak, UNIT[metric] + "/s")));
    return el("tr", { class: cls, dataset: { label: s.label } }, ...cells);
  };
  series.forEach((s) => rows.push(row(s, s.key ? "row" : "other")));
  rows.push(row({ label: "Total", key: null, color: null, raw: doc.total }, "total"));
  table($("viz-table"), heads, rows);
  const sampled = doc.sample > 1
    ? ` Estimate: read 1/${doc.sample} of the flows (a hash sample of ${int(doc.rowsInRange)} rows) and scaled ` +
      `by ${doc.sample}; tick "exact" for every flow.`
    : "";
  // which table answered: the coarsest rollup that answers, or the source's own table (and why)
  const from = doc.resolution === "full"
    ? `from ${doc.table} (full resolution)`
    : `from ${doc.table} (${doc.resolution} buckets of rollup task ${doc.rollupTask}; flows not counted)`;
  $("viz-note").textContent =
    `${doc.times.length} buckets of ${span(doc.step)} ${from}. ` +
    `Time axis: ${doc.axisMeaning}.${sampled} ${doc.elapsedMs} ms.`;
  $("viz-note").title = doc.reason || "";
  $("viz-note").dataset.sample = String(doc.sample);
  $("viz-note").dataset.table = doc.table;
  $("viz-note").dataset.resolution = doc.resolution;
  return doc;
}
