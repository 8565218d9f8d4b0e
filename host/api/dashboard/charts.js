// Small SVG charts of the node's history, drawn without a library. Every
// chart is a <figure> with a caption, a one-line summary in text and an
// SVG with a <title> and <desc>, so it reads without the picture.

const NS = "http://www.w3.org/2000/svg";
const W = 600;
const H = 180;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

let serial = 0;

/** A compact number: 1234 → "1.2k". */
export function compact(n) {
  if (!Number.isFinite(n)) return "–";
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function frame(root, max, times) {
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  root.append(
    svg("line", { class: "axis", x1: x0, y1: y0, x2: x1, y2: y0 }),
    svg("line", { class: "axis", x1: x0, y1: PAD.top, x2: x0, y2: y0 }),
    svg("text", { x: x0 - 4, y: PAD.top + 10, "text-anchor": "end" }, compact(max)),
    svg("text", { x: x0 - 4, y: y0, "text-anchor": "end" }, "0"),
  );
  if (times.length) {
    root.append(
      svg("text", { x: x0, y: H - 6 }, clock(times[0])),
      svg("text", { x: x1, y: H - 6, "text-anchor": "end" }, clock(times[times.length - 1])),
    );
  }
}

function figure(title, summary, legend) {
  const id = `chart-${++serial}`;
  const fig = document.createElement("figure");
  fig.className = "chart";
  const cap = document.createElement("figcaption");
  cap.id = `${id}-t`;
  cap.textContent = title;
  const sum = document.createElement("p");
  sum.className = "summary";
  sum.id = `${id}-d`;
  sum.textContent = summary;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-labelledby": `${id}-t`,
    "aria-describedby": `${id}-d`,
  });
  root.append(svg("title", {}, title), svg("desc", {}, summary));
  fig.append(cap, sum, root);
  if (legend.length > 1) {
    const ul = document.createElement("ul");
    ul.className = "legend";
    for (const s of legend) {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = `swatch ${s.cls}`;
      li.append(sw, s.name);
      ul.append(li);
    }
    fig.append(ul);
  }
  return { fig, root };
}

/**
 * Stacked bars, one per point: `series` is [{name, cls, values}], all as
 * long as `times`.
 */
export function bars(title, times, series, unit) {
  const n = times.length;
  const totals = times.map((_, i) => series.reduce((a, s) => a + (s.values[i] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const sums = series.map((s) => s.values.reduce((a, v) => a + (v ?? 0), 0));
  const peak = Math.max(0, ...totals);
  const summary = n
    ? `${series.map((s, i) => `${compact(sums[i])} ${s.name}`).join(", ")} ${unit} over the last ${span(times)}; at most ${compact(peak)} in one minute.`
    : "No points yet.";
  const { fig, root } = figure(title, summary, series);
  frame(root, max, times);
  const width = (W - PAD.left - PAD.right) / Math.max(n, 1);
  const scale = (H - PAD.top - PAD.bottom) / max;
  series.forEach((s) => {
    const g = svg("g", { class: s.cls });
    root.append(g);
    s.group = g;
  });
  for (let i = 0; i < n; i++) {
    let base = H - PAD.bottom;
    for (const s of series) {
      const v = s.values[i] ?? 0;
      if (v <= 0) continue;
      const h = v * scale;
      base -= h;
      s.group.append(svg("rect", {
        x: (PAD.left + i * width).toFixed(2),
        y: base.toFixed(2),
        width: Math.max(width - (width > 3 ? 1 : 0), 0.5).toFixed(2),
        height: h.toFixed(2),
      }));
    }
  }
  return fig;
}

/** A line over the points; `values` may hold nulls (no reading). */
export function line(title, times, values, unit) {
  const known = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
  const max = Math.max(1, ...known.map(([, v]) => v));
  const last = known.length ? known[known.length - 1][1] : null;
  const low = known.length ? Math.min(...known.map(([, v]) => v)) : null;
  const summary = known.length
    ? `Now ${compact(last)} ${unit}; between ${compact(low)} and ${compact(Math.max(...known.map(([, v]) => v)))} over the last ${span(times)}.`
    : "No readings yet.";
  const { fig, root } = figure(title, summary, [{ name: title, cls: "line" }]);
  frame(root, max, times);
  const n = Math.max(times.length - 1, 1);
  const x = (i) => PAD.left + (i / n) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  if (known.length) {
    const d = known.map(([i, v], k) => `${k ? "L" : "M"}${x(i).toFixed(2)},${y(v).toFixed(2)}`).join("");
    const [fi] = known[0];
    const [li] = known[known.length - 1];
    root.append(
      svg("path", { class: "area", d: `${d}L${x(li).toFixed(2)},${y(0)}L${x(fi).toFixed(2)},${y(0)}Z` }),
      svg("path", { class: "line", d }),
    );
    if (known.length === 1) root.append(svg("circle", { class: "dot", cx: x(fi), cy: y(known[0][1]), r: 3 }));
  }
  return fig;
}

function span(times) {
  if (times.length < 2) return "minute";
  const minutes = Math.round((times[times.length - 1] - times[0]) / 60000) + 1;
  return minutes >= 120 ? `${Math.round(minutes / 60)} hours` : `${minutes} minutes`;
}
