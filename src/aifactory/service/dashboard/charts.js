// aifactory dashboard: line charts drawn as SVG (no library, no CDN: the page's CSP allows
// only this origin's scripts). A chart is a time axis (UTC, HH:MM), a value axis with
// "nice" ticks and a unit, one polyline per series, optional dashed limit lines (a site's
// power cap) and a legend. Every label is set with textContent: tenant and site names are
// data, never markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function niceStep(span, ticks) {
  const raw = span / Math.max(1, ticks);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function fmtValue(v) {
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) < 1 ? String(Number(v.toPrecision(2))) : v.toFixed(1);
}

function fmtTime(t, span) {
  const iso = new Date(t * 1000).toISOString();
  return span > 2 * 86400 ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(11, 16);
}

// series: [{name, points: [[t, v], ...]}]; limits: [{name, value}] drawn dashed;
// opts.daily: points are UTC days, the time axis is labelled by day (MM-DD).
// Returns the number of series drawn (0: "no data" is shown instead).
function lineChart(host, title, unit, series, limits, opts) {
  const daily = Boolean(opts && opts.daily);
  host.replaceChildren();
  const W = 640, H = 260, L = 64, R = 12, T = 28, B = 56;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    class: "chart" }, host);
  svgEl("title", {}, svg).textContent = title;
  const head = svgEl("text", { x: L, y: 16, class: "chart-title" }, svg);
  head.textContent = title + " (" + unit + ")";
  const drawn = series.filter((s) => s.points.length > 0);
  if (drawn.length === 0) {
    svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" }, svg)
      .textContent = "no samples yet";
    return 0;
  }
  let t0 = Infinity, t1 = -Infinity, vmax = 0;
  for (const s of drawn) for (const [t, v] of s.points) {
    t0 = Math.min(t0, t); t1 = Math.max(t1, t); vmax = Math.max(vmax, v);
  }
  for (const l of limits || []) vmax = Math.max(vmax, l.value);
  if (t1 === t0) { const pad = daily ? 43200 : 300; t0 -= pad; t1 += pad; }
  const vstep = niceStep(vmax || 1, 5);
  const vtop = Math.max(vstep, Math.ceil((vmax || 1) / vstep) * vstep);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / vtop) * (H - T - B);
  // value axis: grid lines and labels
  for (let v = 0; v <= vtop + 1e-9; v += vstep) {
    svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }, svg);
    svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, svg)
      .textContent = fmtValue(v);
  }
  // time axis: about six labels on round minutes
  const tstep = daily ? Math.max(1, Math.ceil((t1 - t0) / 86400 / 8)) * 86400
    : niceStep((t1 - t0) / 60, 6) * 60;
  for (let t = Math.ceil(t0 / tstep) * tstep; t <= t1; t += tstep) {
    svgEl("line", { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4, class: "axis" }, svg);
    svgEl("text", { x: x(t), y: H - B + 16, "text-anchor": "middle", class: "tick" }, svg)
      .textContent = daily ? new Date(t * 1000).toISOString().slice(5, 10) : fmtTime(t, t1 - t0);
  }
  svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
  svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, svg);
  svgEl("text", { x: (L + W - R) / 2, y: H - B + 30, "text-anchor": "middle",
    class: "axis-label" }, svg).textContent = daily ? "day (UTC)" : "time (UTC)";
  const legend = [];
  drawn.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const pts = s.points.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
    svgEl("polyline", { points: pts, fill: "none", stroke: colour, "stroke-width": 2,
      class: "series", "data-series": s.name }, svg);
    // a line through one point is invisible: mark it
    if (s.points.length === 1) {
      svgEl("circle", { cx: x(s.points[0][0]), cy: y(s.points[0][1]), r: 3, fill: colour,
        class: "point" }, svg);
    }
    legend.push([s.name, colour, false]);
  });
  (limits || []).forEach((l, i) => {
    const colour = COLOURS[(drawn.length + i) % COLOURS.length];
    svgEl("line", { x1: L, x2: W - R, y1: y(l.value), y2: y(l.value), stroke: colour,
      "stroke-dasharray": "6 4", "stroke-width": 1.5, class: "limit" }, svg);
    legend.push([l.name, colour, true]);
  });
  let lx = L;
  for (const [name, colour, dashed] of legend) {
    svgEl("line", { x1: lx, x2: lx + 16, y1: H - 10, y2: H - 10, stroke: colour,
      "stroke-width": 2, "stroke-dasharray": dashed ? "4 3" : "none" }, svg);
    const label = svgEl("text", { x: lx + 20, y: H - 6, class: "legend" }, svg);
    label.textContent = name;
    lx += 28 + 7 * name.length;
  }
  return drawn.length;
}
