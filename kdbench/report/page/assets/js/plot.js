// plot.js: NDCG@10 against a cost (log scale), one point per row, with each dataset's Pareto front.
const PLOT = { width: 1240, height: 400, left: 64, right: 18, top: 16, bottom: 48 };
const SHAPES = ["circle", "square", "triangle", "diamond", "cross", "star"];
const COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];  // Okabe-Ito

function shapePath(shape, r) {
  const s = r * 0.9, t = r * 1.15;
  switch (shape) {
    case "square": return "M" + -s + "," + -s + "h" + 2 * s + "v" + 2 * s + "h" + -2 * s + "Z";
    case "triangle": return "M0," + -t + "L" + t + "," + t * 0.8 + "L" + -t + "," + t * 0.8 + "Z";
    case "diamond": return "M0," + -t + "L" + t + ",0L0," + t + "L" + -t + ",0Z";
    case "cross": {
      const a = r / 2.5;
      return "M" + -a + "," + -r + "H" + a + "V" + -a + "H" + r + "V" + a + "H" + a + "V" + r + "H" + -a + "V" + a +
        "H" + -r + "V" + -a + "H" + -a + "Z";
    }
    case "star": return "M0," + -t + "L" + t * 0.3 + "," + -t * 0.3 + "L" + t + ",0L" + t * 0.3 + "," + t * 0.3 + "L0," + t +
      "L" + -t * 0.3 + "," + t * 0.3 + "L" + -t + ",0L" + -t * 0.3 + "," + -t * 0.3 + "Z";
    default: return "M" + -r + ",0a" + r + "," + r + " 0 1,0 " + 2 * r + ",0a" + r + "," + r + " 0 1,0 " + -2 * r + ",0";
  }
}

// Points no other point of the same dataset beats on both axes: less cost and at least as good, or
// the same cost and better. Sorted by cost, a point is on the front when it beats every cheaper one.
function paretoKeys(points) {
  const front = new Set();
  const groups = {};
  points.forEach(function (p) { (groups[p.row.dataset] = groups[p.row.dataset] || []).push(p); });
  Object.keys(groups).forEach(function (dataset) {
    const sorted = groups[dataset].slice().sort(function (a, b) { return a.x - b.x || b.y - a.y; });
    let best = -Infinity, last = null;
    sorted.forEach(function (p) {
      const twin = last && p.x === last.x && p.y === last.y;  // the same point twice (a teacher in two tables)
      if (p.y > best || twin) { front.add(p.row._key); best = p.y; last = p; }
    });
  });
  return front;
}

function niceTicks(lo, hi, count) {
  const step0 = (hi - lo) / count, power = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map(function (m) { return m * power; }).find(function (s) { return s >= step0; });
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function logTicks(lo, hi) {
  const ticks = [];
  const span = Math.log10(hi) - Math.log10(lo);
  const steps = span > 3 ? [1] : span > 1.8 ? [1, 3] : [1, 2, 5];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    steps.forEach(function (m) { const v = m * Math.pow(10, e); if (v >= lo && v <= hi) ticks.push(v); });
  }
  return ticks;
}

function renderPlot(rows) {
  const axis = AXES[STATE.x];
  const points = rows.map(function (row) { return { row: row, x: axis.value(row), y: row["ndcg@10_mean"] }; })
    .filter(function (p) { return finite(p.x) && p.x > 0 && finite(p.y); });
  const box = document.getElementById("plot");
  const W = PLOT.width, H = PLOT.height;
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "group", "aria-labelledby": "plot-title",
                             "aria-describedby": "plot-legend", "data-points": points.length });
  const datasets = Array.from(new Set(rows.map(function (r) { return r.dataset; }))).sort(COLLATOR.compare);
  const left = PLOT.left, right = W - PLOT.right, top = PLOT.top, bottom = H - PLOT.bottom;
  let lx = [0, 1], ly = [0, 1];
  if (points.length) {
    const xs = points.map(function (p) { return Math.log10(p.x); }), ys = points.map(function (p) { return p.y; });
    const xPad = Math.max((Math.max.apply(null, xs) - Math.min.apply(null, xs)) * 0.04, 0.05);
    const yPad = Math.max((Math.max.apply(null, ys) - Math.min.apply(null, ys)) * 0.06, 0.005);
    lx = [Math.min.apply(null, xs) - xPad, Math.max.apply(null, xs) + xPad];
    ly = [Math.max(0, Math.min.apply(null, ys) - yPad), Math.max.apply(null, ys) + yPad];
  }
  const sx = function (v) { return left + (Math.log10(v) - lx[0]) / (lx[1] - lx[0]) * (right - left); };
  const sy = function (v) { return bottom - (v - ly[0]) / (ly[1] - ly[0]) * (bottom - top); };
  const grid = svgEl("g", { class: "tick", "aria-hidden": "true" });
  niceTicks(ly[0], ly[1], 6).forEach(function (v) {
    grid.append(svgEl("line", { class: "grid", x1: left, x2: right, y1: sy(v), y2: sy(v) }));
    grid.append(svgEl("text", { x: left - 6, y: sy(v) + 4, "text-anchor": "end", text: v.toFixed(3) }));
  });
  logTicks(Math.pow(10, lx[0]), Math.pow(10, lx[1])).forEach(function (v) {
    grid.append(svgEl("line", { class: "grid", x1: sx(v), x2: sx(v), y1: top, y2: bottom }));
    grid.append(svgEl("text", { x: sx(v), y: bottom + 16, "text-anchor": "middle", text: axis.text(v) }));
  });
  grid.append(svgEl("rect", { x: left, y: top, width: right - left, height: bottom - top, fill: "none", stroke: "#888" }));
  grid.append(svgEl("text", { class: "axis-label", x: (left + right) / 2, y: H - 10, "text-anchor": "middle", text: axis.label }));
  grid.append(svgEl("text", { class: "axis-label", transform: "rotate(-90)", x: -(top + bottom) / 2, y: 16,
                              "text-anchor": "middle", text: "NDCG@10 (mean over seeds)" }));
  svg.append(grid);
  const front = paretoKeys(points);
  datasets.forEach(function (dataset, i) {  // the front: a staircase through the dataset's front points
    const mine = points.filter(function (p) { return p.row.dataset === dataset && front.has(p.row._key); })
      .sort(function (a, b) { return a.x - b.x; });
    if (mine.length < 2) return;
    let d = "M" + sx(mine[0].x) + "," + sy(mine[0].y);
    for (let k = 1; k < mine.length; k++) d += "H" + sx(mine[k].x) + "V" + sy(mine[k].y);
    svg.append(svgEl("path", { class: "front", d: d, stroke: COLOURS[i % COLOURS.length],
                               "stroke-dasharray": ["6 3", "2 3", "8 3 2 3"][i % 3], "aria-hidden": "true" }));
  });
  const layer = svgEl("g", { class: "points" });
  const ordered = points.slice().sort(function (a, b) { return a.x - b.x || a.y - b.y; });
  ordered.forEach(function (p, order) {
    const i = datasets.indexOf(p.row.dataset);
    const onFront = front.has(p.row._key), selected = p.row._key === STATE.sel;
    const name = rowTitle(p.row) + ": NDCG@10 " + fixed(p.y, 4) + ", " + axis.short + " " + axis.text(p.x) +
      (onFront ? " (on the Pareto front)" : "");
    const g = svgEl("g", { class: "pt" + (onFront ? "" : " hollow") + (selected ? " selected" : ""),
                           transform: "translate(" + sx(p.x).toFixed(2) + "," + sy(p.y).toFixed(2) + ")",
                           "data-key": p.row._key, "data-order": order, tabindex: "-1", role: "button",
                           "aria-label": name, "aria-pressed": selected ? "true" : "false" }, [
      svgEl("title", { text: name }),
      svgEl("circle", { class: "ring", r: 10 }),
      svgEl("path", { class: "mark", d: shapePath(SHAPES[i % SHAPES.length], onFront ? 5.5 : 4.5),
                      fill: COLOURS[i % COLOURS.length], stroke: COLOURS[i % COLOURS.length] })]);
    layer.append(g);
  });
  svg.append(layer);
  const focusable = layer.querySelector(".pt.selected") || layer.querySelector(".pt");
  if (focusable) focusable.setAttribute("tabindex", "0");
  box.replaceChildren(svg, el("div", { id: "tip", hidden: true }));
  wirePoints(layer);
  const missing = rows.length - points.length;
  document.getElementById("plot-legend").textContent = datasets.map(function (d, i) {
    return SHAPES[i % SHAPES.length] + ": " + d;
  }).join("; ") + ". Filled, larger marks joined by a dashed staircase: the Pareto front of each dataset (no other " +
    "row of the dataset has less " + axis.short + " and at least its NDCG@10); hollow marks: dominated rows." +
    (missing ? " " + missing + " row(s) without an NDCG@10 or a " + axis.short + " are not drawn." : "");
}

function wirePoints(layer) {
  const tip = document.getElementById("tip");
  const caption = document.getElementById("plot-caption");
  const show = function (g) {
    caption.textContent = g.getAttribute("aria-label");
    const area = document.getElementById("plot").getBoundingClientRect(), box = g.getBoundingClientRect();
    tip.textContent = g.getAttribute("aria-label");
    tip.hidden = false;
    tip.style.left = Math.min(box.left - area.left + 14, area.width - 320) + "px";
    tip.style.top = (box.top - area.top - 8) + "px";
  };
  const hide = function () { tip.hidden = true; };
  layer.addEventListener("mouseover", function (e) { const g = e.target.closest(".pt"); if (g) show(g); });
  layer.addEventListener("mouseout", function (e) { if (e.target.closest(".pt")) hide(); });
  layer.addEventListener("focusin", function (e) { const g = e.target.closest(".pt"); if (g) show(g); });
  layer.addEventListener("focusout", hide);
  layer.addEventListener("click", function (e) { const g = e.target.closest(".pt"); if (g) select(g.dataset.key, true); });
  layer.addEventListener("keydown", function (e) {
    const g = e.target.closest(".pt");
    if (!g) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(g.dataset.key, true); return; }
    const step = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 }[e.key];
    if (!step) return;
    e.preventDefault();
    const next = layer.querySelector('.pt[data-order="' + (Number(g.dataset.order) + step) + '"]');
    if (next) { g.setAttribute("tabindex", "-1"); next.setAttribute("tabindex", "0"); next.focus(); }
  });
}
