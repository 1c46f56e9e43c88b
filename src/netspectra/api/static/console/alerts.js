// Alerts: the stored alert history with the AI analysis status, each linked to its traffic (the
// matching time range on the stored-time axis, and a filter on the flow it names).

import { get } from "./api.js";
import { $, el, table, timeCell } from "./dom.js";


/** The filter naming a sketch alert's flow ("10.0.0.1 443" with flow fields [SrcIP, DstPort]). */
export function flowFilter(flow, fields, source) {
  if (!flow || !fields || !fields.length) return "";
  const values = flow.split(" ");
  if (values.length !== fields.length) return "";
  const have = new Set(source.fields.map((f) => f.name));
  return fields.map((f, i) => [f, values[i]]).filter(([f]) => have.has(f)).map(([f, v]) => `${f} = ${v}`).join(" AND ");
}

/** The request of this view: [path, params]. */
export function request(ctx) {
  return ["/api/v1/alerts", { start: ctx.range.start, end: ctx.range.end, limit: 500 }];
}

export async function render(ctx) {
  const { catalog } = ctx;
  const doc = await get(...request(ctx));
  const sketch = Object.fromEntries(catalog.sketchTasks.map((t) => [t.name, t]));
  const interval = catalog.alertIntervalMs || 600000;
  const rows = doc.alerts.map((a) => {
    const tMs = Number(BigInt(a.timeNs) / 1000000n);
    const exactSource = catalog.sources.find((s) => s.task === a.task);
    const source = exactSource || catalog.sources[0];
    const filter = sketch[a.task] && source ? flowFilter(a.flow, sketch[a.task].flowFields, source) : "";
    const target = {
      view: "visualize",
      source: source ? source.id : "",
      range: "abs",
      start: new Date(tMs - interval).toISOString().slice(0, 19),
      end: new Date(tMs + 1000).toISOString().slice(0, 19),
      axis: "snapshot",
      filter,
    };
    const links = el("td", {});
    links.append(el("a", { href: ctx.urlOf(target), class: "traffic" }, "traffic"));
    if (filter) links.append(" ", el("a", { href: ctx.urlOf({ ...target, view: "flows" }) }, "flows"));
    const ip = (a.flow || "").split(" ").find((v) => /^\d+\.\d+\.\d+\.\d+$/.test(v) || v.includes(":"));
    if (ip) links.append(" ", el("a", { href: ctx.hostLink(ip) }, "host"));
    const failed = Object.entries(a.failed || {}).map(([k, v]) => `${k}: ${v}`).join("; ");
    const ai = el("td", { class: "ai", dataset: { status: a.aiStatus } }, a.aiStatus);
    if (a.aiAnalysis) ai.append(el("details", {}, el("summary", {}, "analysis"), el("div", { class: "analysis" }, a.aiAnalysis)));
    return el("tr", { class: "row", dataset: { time: a.timeNs, task: a.task, rule: a.rule } },
      timeCell(a.timeNs), el("td", {}, a.task), el("td", {}, a.rule),
      el("td", {}, `${a.metric} ${a.operator} ${a.threshold}`),
      el("td", { class: "num", dataset: { value: String(a.value) } }, String(a.value)),
      el("td", {}, a.flow || ""), el("td", {}, (a.delivered || []).join(", ") + (failed ? ` (failed: ${failed})` : "")),
      ai, links);
  });
  table($("alerts-table"), ["time (UTC)", "task", "rule", "condition", "observed", "flow", "notified", "AI analysis", ""], rows);
  return doc;
}
