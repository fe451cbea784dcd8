// state.js: the view (filters, search, sort, columns, cost axis, selected row) and its URL hash.
const FILTERS = [
  { id: "ds", label: "Dataset", values: function (r) { return [r.dataset]; } },
  { id: "pair", label: "Pairing", values: function (r) { return [r.pairing]; }, text: arrow },
  { id: "bb", label: "Backbone", values: function (r) { return r._backbones; }, text: backboneText },
  { id: "fam", label: "Strategy family", values: function (r) { return [r.family]; } },
  { id: "var", label: "Defaults / tuned", values: function (r) { return [r.variant]; } },
];
const AXES = {
  bytes: { label: "Model size (bytes, log scale)", short: "size", value: function (r) { return r.size_bytes; }, text: bytes },
  latency: { label: "Latency per user (ms, log scale)", short: "latency",
             value: function (r) { return r.latency_p50_ms; }, text: function (v) { return fixed(v, 3) + " ms"; } },
  train: { label: "Training seconds to the best model (log scale)", short: "training time",
           value: function (r) { return r.time_to_best_s_mean; }, text: function (v) { return fixed(v, 0) + " s"; } },
};
const BACKBONE_FAMILIES = ["general", "sequential"];
function backboneText(value) {
  return BACKBONE_FAMILIES.indexOf(value) >= 0 ? value + " (family)" : "\u2003" + value;
}

function defaultState() {
  return { ds: "", pair: "", bb: "", fam: "", var: "", sig: false, q: "", sort: "", dir: "asc",
           cols: DEFAULT_COLUMNS.slice(), x: "bytes", sel: "" };
}
let STATE = defaultState();

function stateFromHash(hash) {
  const params = new URLSearchParams(String(hash || "").replace(/^#/, ""));
  const state = defaultState();
  FILTERS.forEach(function (f) { state[f.id] = params.get(f.id) || ""; });
  state.sig = params.get("sig") === "1";
  state.q = params.get("q") || "";
  state.sort = COLUMN_BY_ID[params.get("sort")] ? params.get("sort") : "";
  state.dir = params.get("dir") === "desc" ? "desc" : "asc";
  if (params.has("cols")) {
    state.cols = params.get("cols").split(",").filter(function (id) { return COLUMN_BY_ID[id]; });
  }
  state.x = AXES[params.get("x")] ? params.get("x") : "bytes";
  state.sel = params.get("sel") || "";
  return state;
}

function hashFromState(state) {
  const params = new URLSearchParams();
  const base = defaultState();
  FILTERS.forEach(function (f) { if (state[f.id]) params.set(f.id, state[f.id]); });
  if (state.sig) params.set("sig", "1");
  if (state.q) params.set("q", state.q);
  if (state.sort) { params.set("sort", state.sort); params.set("dir", state.dir); }
  if (state.cols.join(",") !== base.cols.join(",")) params.set("cols", state.cols.join(","));
  if (state.x !== base.x) params.set("x", state.x);
  if (state.sel) params.set("sel", state.sel);
  const text = params.toString();
  return text ? "#" + text : "";
}

// Rewrite the hash without a history entry per keystroke (and without a hashchange echo).
function saveHash() {
  const hash = hashFromState(STATE);
  if (hash === location.hash || (!hash && !location.hash)) return;
  const url = location.href.split("#")[0] + hash;
  try { history.replaceState(null, "", url); } catch (error) { location.replace(hash || "#"); }
}

function matches(row, state) {
  for (const f of FILTERS) {
    if (state[f.id] && f.values(row).indexOf(state[f.id]) < 0) return false;
  }
  if (state.sig && !(finite(row.p_value_holm) && row.p_value_holm < 0.05)) return false;
  if (state.q) {
    const haystack = [row.strategy, row.method, row.family, row.dataset, row.pairing, row.variant, row.model,
                      row.teacher, row.student, rowName(row)].join(" ").toLowerCase();
    const words = state.q.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.every(function (w) { return haystack.indexOf(w) >= 0; })) return false;
  }
  return true;
}

function visibleRows() {
  const rows = ROWS.filter(function (r) { return matches(r, STATE); });
  if (STATE.sort) rows.sort(compareRows(COLUMN_BY_ID[STATE.sort], STATE.dir));
  return rows;
}

function filterOptions(filter) {
  const seen = new Set();
  ROWS.forEach(function (r) { filter.values(r).forEach(function (v) { if (v) seen.add(v); }); });
  let values = Array.from(seen).sort(COLLATOR.compare);
  if (filter.id === "bb") {  // each family, then its models
    const families = BACKBONE_FAMILIES.filter(function (f) { return seen.has(f); });
    values = [];
    families.forEach(function (family) {
      values.push(family);
      const models = new Set();
      ROWS.forEach(function (r) { if (r._backbones[0] === family) r._backbones.slice(1).forEach(function (m) { models.add(m); }); });
      Array.from(models).sort(COLLATOR.compare).forEach(function (m) { if (values.indexOf(m) < 0) values.push(m); });
    });
  }
  return values;
}
