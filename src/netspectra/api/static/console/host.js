// Host: everything the store says about one address — what it sent and received, its peers, ports and
// protocols, its timeline, the heavy-hitter and super-spreader entries and the alerts that name it.

import { get } from "./api.js";
import { timeChart } from "./charts.js";
import { $, el, numCell, table, timeCell } from "./dom.js";
import { span } from "./format.js";

const TITLES = {
  peers_out: "Sent to (peers)",
  peers_in: "Received from (peers)",
  ports_out: "Destination ports it used",
  ports_in: "Its destination ports others used",
  protocols: "Protocols",
};
const HITTER_TYPES = { 0: "heavy hitter (packets)", 1: "heavy hitter (bytes)", 2: "super-spreader (distinct)" };

export function setup(ctx) {
  $("host-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    ctx.go({ view: "host", ip: $("host-ip").value.trim() });
  });
}

function totalsTable(doc) {
  const t = el("table", { class: "data", id: "host-totals" });
  const rows = [["sent", doc.totals.out], ["received", doc.totals.in]].map(([name, v]) =>
    el("tr", { class: "row", dataset: { direction: name } }, el("td", {}, name), numCell(v.packets),
      numCell(v.bytes), numCell(v.flows)));
  return table(t, ["", "packets", "bytes", "flows"], rows);
}

/** The request of this view: [path, params], or null without an address. */
export function request(ctx) {
  const { state, source, range } = ctx;
  if (!state.ip) return null;
  return ["/api/v1/console/host", {
    ip: state.ip,
    source: source.id,
    axis: state.axis,
    start: range.start,
    end: range.end,
    limit: 10,
  }];
}

export async function render(ctx) {
  const { state } = ctx;
  $("host-ip").value = state.ip;
  const body = $("host-body");
  if (!state.ip) {
    body.replaceChildren(el("p", { class: "note" }, "Type an address, or follow an address link in any view."));
    return null;
  }
  const doc = await get(...request(ctx));
  const parts = [el("h2", { id: "host-title", dataset: { ip: doc.ip } }, doc.ip)];
  parts.push(el("p", { class: "note" }, `From ${doc.source}; time axis: ${doc.axisMeaning}. ` +
    `Buckets of ${span(doc.step)}. ${doc.elapsedMs} ms.`));
  parts.push(totalsTable(doc));
  const chart = el("div", { class: "chart-box", id: "host-chart" });
  parts.push(el("h3", {}, "Timeline (bytes)"), chart);
  const facets = el("div", { class: "facets" });
  for (const [name, rows] of Object.entries(doc.facets)) {
    const t = el("table", { class: "data", dataset: { facet: name } });
    const attr = /^(own|peers)_(.+)$/.exec(name);
    const peer = name === "peers_out" || name === "peers_in";
    const head = attr ? attr[2] : peer ? "address" : name.startsWith("ports") ? "port" : "protocol";
    table(t, [head, "packets", "bytes", "flows"],
      rows.map(([v, p, b, f]) => el("tr", { class: "row" },
        el("td", { dataset: { value: String(v) } }, peer ? el("a", { href: ctx.hostLink(String(v)) }, String(v)) : String(v)),
        numCell(p), numCell(b), numCell(f))));
    const title = TITLES[name] || (attr ? (attr[1] === "own" ? `Its ${attr[2]}` : `Peers' ${attr[2]}`) : name);
    facets.append(el("section", { class: "facet" }, el("h3", {}, title), t));
  }
  parts.push(facets);
  const hitters = el("table", { class: "data", id: "host-hitters" });
  table(hitters, ["task", "kind", "flow", "value", "reported"], doc.hitters.map((h) =>
    el("tr", { class: "row" }, el("td", {}, h.task), el("td", {}, HITTER_TYPES[h.type] || String(h.type)),
      el("td", {}, h.flow), numCell(h.value), timeCell(h.time))));
  parts.push(el("h3", {}, "Heavy hitters and super-spreaders naming it"), hitters);
  const alerts = el("table", { class: "data", id: "host-alerts" });
  table(alerts, ["time", "task", "rule", "value", "flow", "AI analysis"], doc.alerts.map((a) =>
    el("tr", { class: "row" }, timeCell(a.timeNs), el("td", {}, a.task), el("td", {}, a.rule),
      el("td", { class: "num" }, String(a.value)), el("td", {}, a.flow || ""), el("td", {}, a.aiStatus))));
  parts.push(el("h3", {}, "Alerts naming it"), alerts);
  body.replaceChildren(...parts);
  timeChart(chart, {
    times: doc.times,
    step: doc.step,
    stacked: false,
    unit: "B",
    height: 200,
    series: [
      { label: "sent", color: "#3274d9", values: doc.timeline.out.bytes, total: doc.totals.out.bytes },
      { label: "received", color: "#e0752d", values: doc.timeline.in.bytes, total: doc.totals.in.bytes },
    ],
  });
  return doc;
}
