// Charts drawn by hand in SVG (no third-party code): stacked areas, lines, a grid of small charts, a
// sankey diagram between two or three dimensions. Every mark carries its numbers in data-* attributes
// and a <title> (the tests read them; so does a screen reader).

import { si, time } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = [
  "#3274d9", "#e0752d", "#56a64b", "#d44a3a", "#8f3bb8", "#37872d", "#f2cc0c", "#1f60c4",
  "#fa6400", "#c4162a", "#5794f2", "#ff9830", "#73bf69", "#f2495c", "#b877d9", "#8ab8ff",
];
export const OTHER_COLOR = "#9aa3ad";

export function svgEl(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function frame(box, width, height) {
  box.replaceChildren();
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" });
  box.append(svg);
  return svg;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axes(svg, g, x0, x1, yMax, unit) {
  const { L, R, T, B, W, H } = g;
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = H - B - f * (H - T - B);
    svg.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
    svg.append(svgEl("text", { x: L - 4, y: y + 3, "text-anchor": "end" }, si(yMax * f, unit)));
  }
  svg.append(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const ticks = Math.min(6, Math.max(2, Math.floor((W - L - R) / 160)));
  for (let i = 0; i <= ticks; i++) {
    const ns = x0 + ((x1 - x0) * i) / ticks;
    const x = L + ((W - L - R) * i) / ticks;
    const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
    svg.append(svgEl("text", { x, y: H - 6, "text-anchor": anchor }, time(Math.round(ns), false)));
  }
}

/**
 * Series over time. series: [{label, color, values: [number per bucket], key}], times: bucket starts (ns),
 * step: bucket width (ns); stacked: areas on top of each other, else lines. unit: text after the numbers.
 */
export function timeChart(box, { times, step, series, stacked, unit = "", height = 320 }) {
  const W = Math.max(box.clientWidth || 900, 400);
  const H = height;
  const g = { L: 70, R: 14, T: 10, B: 24, W, H };
  const svg = frame(box, W, H);
  svg.dataset.kind = stacked ? "stacked" : "lines";
  svg.dataset.points = String(times.length);
  if (!times.length || !series.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no data"));
    return svg;
  }
  const x0 = times[0];
  const x1 = times[times.length - 1] + step;
  const px = (t) => g.L + ((t - x0) / (x1 - x0)) * (W - g.L - g.R);
  const n = times.length;
  const base = new Array(n).fill(0);
  const tops = series.map((s) => {
    const top = s.values.map((v, i) => (stacked ? base[i] + v : v));
    if (stacked) top.forEach((v, i) => (base[i] = v));
    return top;
  });
  const yMax = niceMax(Math.max(1, ...tops.flat()));
  const py = (v) => H - g.B - (v / yMax) * (H - g.T - g.B);
  axes(svg, g, x0, x1, yMax, unit);
  // centre of each bucket; a single bucket spans the chart
  const xs = times.map((t) => (n === 1 ? null : px(t + step / 2)));
  const pointsOf = (arr) =>
    n === 1 ? [[g.L, py(arr[0])], [W - g.R, py(arr[0])]] : arr.map((v, i) => [xs[i], py(v)]);
  const below = new Array(n).fill(0);
  series.forEach((s, k) => {
    const top = pointsOf(tops[k]);
    const group = svgEl("g", { class: "series", "data-label": s.label, "data-total": String(s.total ?? "") });
    if (stacked) {
      const bottom = pointsOf(below).reverse();
      const d = [...top, ...bottom].map((p, i) => `${i ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`);
      group.append(svgEl("path", { class: "area", d: `${d.join(" ")} Z`, fill: s.color }));
      tops[k].forEach((v, i) => (below[i] = v));
    } else {
      const d = top.map((p, i) => `${i ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`);
      group.append(svgEl("path", { class: "line", d: d.join(" "), stroke: s.color }));
    }
    group.append(svgEl("title", {}, s.label));
    svg.append(group);
  });
  // hover: one transparent column per bucket with the values of every series
  const width = n === 1 ? W - g.L - g.R : (W - g.L - g.R) / n;
  times.forEach((t, i) => {
    const x = n === 1 ? g.L : px(t);
    const col = svgEl("rect", { class: "hover", x, y: g.T, width, height: H - g.T - g.B, "data-time": String(t) });
    const lines = series.map((s) => `${s.label}: ${si(s.values[i], unit)}`);
    col.append(svgEl("title", {}, `${time(t, false)}\n${lines.join("\n")}`));
    svg.append(col);
  });
  return svg;
}

/** One small chart per series, each with its own scale. */
export function gridChart(box, { times, step, series, unit = "" }) {
  box.replaceChildren();
  const wrap = document.createElement("div");
  wrap.className = "grid-charts";
  box.append(wrap);
  for (const s of series) {
    const cell = document.createElement("figure");
    cell.className = "grid-cell";
    const cap = document.createElement("figcaption");
    cap.textContent = s.label;
    cap.style.borderColor = s.color;
    const inner = document.createElement("div");
    cell.append(cap, inner);
    wrap.append(cell);
    timeChart(inner, { times, step, series: [s], stacked: true, unit, height: 150 });
  }
  return wrap;
}

/**
 * A sankey diagram: columns = dimensions, nodes = their values, links = the top combinations (and
 * "Other") between consecutive columns, widths proportional to the metric. rows: [{values: [v0, v1, …],
 * weight, label}].
 */
export function sankeyChart(box, { dims, rows, unit = "" }) {
  const W = Math.max(box.clientWidth || 900, 400);
  const H = 420;
  const svg = frame(box, W, H);
  svg.dataset.kind = "sankey";
  if (dims.length < 2 || !rows.length) {
    const msg = dims.length < 2 ? "a sankey needs two or three dimensions" : "no data";
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, msg));
    return svg;
  }
  const total = rows.reduce((a, r) => a + r.weight, 0) || 1;
  const pad = 8;
  const nodeW = 14;
  const colX = dims.map((_, i) => 10 + (i * (W - 20 - nodeW)) / (dims.length - 1));
  const columns = dims.map((_, c) => {
    const sums = new Map();
    for (const r of rows) sums.set(r.values[c], (sums.get(r.values[c]) || 0) + r.weight);
    // largest first, "Other" last
    const nodes = [...sums.entries()].sort((a, b) => (a[0] === "Other") - (b[0] === "Other") || b[1] - a[1]);
    const avail = H - 30 - pad * (nodes.length - 1);
    let y = 20;
    const out = new Map();
    for (const [name, w] of nodes) {
      const h = Math.max(1, (w / total) * avail);
      out.set(name, { y, h, w, inY: y, outY: y });
      y += h + pad;
    }
    return out;
  });
  dims.forEach((d, c) => {
    svg.append(svgEl("text", { x: colX[c] + (c ? nodeW : 0), y: 12, "text-anchor": c ? "end" : "start", class: "head" }, d));
  });
  rows.forEach((r, k) => {
    const color = r.color || PALETTE[k % PALETTE.length];
    for (let c = 0; c < dims.length - 1; c++) {
      const a = columns[c].get(r.values[c]);
      const b = columns[c + 1].get(r.values[c + 1]);
      const ha = (r.weight / a.w) * a.h;
      const hb = (r.weight / b.w) * b.h;
      const xa = colX[c] + nodeW;
      const xb = colX[c + 1];
      const mid = (xa + xb) / 2;
      const d = `M${xa},${a.outY} C${mid},${a.outY} ${mid},${b.inY} ${xb},${b.inY} L${xb},${b.inY + hb} ` +
        `C${mid},${b.inY + hb} ${mid},${a.outY + ha} ${xa},${a.outY + ha} Z`;
      const link = svgEl("path", { class: "link", d, fill: color, "data-weight": String(r.weight) });
      link.append(svgEl("title", {}, `${r.values[c]} → ${r.values[c + 1]}: ${si(r.weight, unit)}`));
      svg.append(link);
      a.outY += ha;
      b.inY += hb;
    }
  });
  columns.forEach((nodes, c) => {
    for (const [name, n] of nodes) {
      const rect = svgEl("rect", { class: "node", x: colX[c], y: n.y, width: nodeW, height: n.h,
        "data-dim": dims[c], "data-value": name, "data-weight": String(n.w) });
      rect.append(svgEl("title", {}, `${dims[c]} ${name}: ${si(n.w, unit)}`));
      svg.append(rect);
      const right = c < dims.length - 1;
      svg.append(svgEl("text", { x: right ? colX[c] + nodeW + 4 : colX[c] - 4, y: n.y + n.h / 2 + 3,
        "text-anchor": right ? "start" : "end" }, `${name} (${si(n.w, unit)})`));
    }
  });
  return svg;
}

/** A small line of recent values (live view). */
export function sparkline(box, values, { unit = "", height = 60 } = {}) {
  const W = Math.max(box.clientWidth || 300, 200);
  const svg = frame(box, W, height);
  if (values.length < 2) return svg;
  const max = Math.max(...values, 1);
  const d = values.map((v, i) => `${i ? "L" : "M"}${((i / (values.length - 1)) * (W - 4) + 2).toFixed(1)},` +
    `${(height - 4 - (v / max) * (height - 8)).toFixed(1)}`);
  svg.append(svgEl("path", { class: "line", d: d.join(" "), stroke: PALETTE[0] }));
  svg.append(svgEl("title", {}, `last ${si(values[values.length - 1], unit)}, max ${si(max, unit)}`));
  return svg;
}
