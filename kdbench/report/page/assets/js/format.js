// format.js: the embedded data, element builders and number formats (as leaderboard.md writes them).
const DATA = JSON.parse(document.getElementById("kdbench-data").textContent);
const ROWS = DATA.rows.map(function (values, index) {
  const row = {};
  DATA.columns.forEach(function (column, i) { row[column] = values[i]; });
  const extra = DATA.extra[index];
  row._index = index;
  row._key = extra.key;
  row._runs = extra.runs.map(function (i) { return DATA.runs[i]; });  // run.path: relative to this page
  row._backbones = extra.backbones;
  row._study = extra.study ? DATA.studies[extra.study] : null;
  row._csv = extra.csv;
  return row;
});
const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  (children || []).forEach(function (child) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  });
  return node;
}

function svgEl(tag, attrs, children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  (children || []).forEach(function (child) { node.append(child instanceof Node ? child : String(child)); });
  return node;
}

function setAttrs(node, attrs) {
  Object.keys(attrs || {}).forEach(function (name) {
    const value = attrs[name];
    if (value === null || value === undefined || value === false) return;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  });
}

function finite(v) { return typeof v === "number" && isFinite(v); }
function fixed(v, digits) { return finite(v) ? v.toFixed(digits) : "—"; }
function grouped(v) {
  return finite(v) ? String(Math.round(v)).replace(/\B(?=(\d{3})+(?!\d))/g, ",") : "—";
}
function meanStd(mean, std, digits) {
  if (!finite(mean)) return "—";
  return finite(std) ? mean.toFixed(digits) + " ± " + std.toFixed(digits) : mean.toFixed(digits);
}
function pct(v, signed, digits) {
  if (!finite(v)) return "—";
  const text = v.toFixed(digits === undefined ? 1 : digits) + "%";
  return signed && v >= 0 ? "+" + text : text;
}
function signedFixed(v, digits) { return (v >= 0 ? "+" : "") + v.toFixed(digits); }
function pValue(v) {
  if (!finite(v)) return "—";
  return v < 0.001 ? v.toExponential(1) : v.toFixed(3);
}
function bytes(v) {
  if (!finite(v)) return "—";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + " MB";
  return (v / 1e3).toFixed(1) + " KB";
}
function seconds(v) {
  if (!finite(v)) return "—";
  v = Math.round(v);
  const h = Math.floor(v / 3600), m = Math.floor((v % 3600) / 60), s = v % 60;
  const two = function (n) { return (n < 10 ? "0" : "") + n; };
  return h ? h + "h " + two(m) + "m " + two(s) + "s" : m + "m " + two(s) + "s";
}
function arrow(pairing) { return String(pairing || "").replace("->", "\u00a0→ "); }  // wraps after the arrow only
function plain(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return String(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
// † / ‡: the Holm-adjusted primary p-value below 0.05 / 0.01 (leaderboard.md's marks)
function mark(row) {
  const p = row.p_value_holm;
  if (!finite(p)) return "";
  return p < 0.01 ? "‡" : p < 0.05 ? "†" : "";
}
function rowName(row) {
  const name = row.family === "teacher" ? "teacher (" + row.model + ")" : row.strategy;
  return name + (row.teacher_trained_further ? " ⁂" : "");
}
function rowTitle(row) {
  return rowName(row) + " — " + row.dataset + ", " + arrow(row.pairing) + ", " + row.variant;
}
function runHref(run) { return encodeURI(run.path); }
function logHref(run) { return encodeURI(run.path.replace(/\.json$/, ".log")); }
function rerunCommand(run) { return "python -m kdbench reproduce " + DATA.results_folder + "/" + run.path; }
