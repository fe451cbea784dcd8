// main.js: header facts, wiring, and one update() that redraws the view from STATE.
function renderFacts() {
  const h = DATA.header || {}, env = h.environment || {};
  const facts = [["Last completed command that ran cells", h.command || "not recorded"],
    ["kdbench / RecBole / torch / Python", [env.kdbench, env.recbole, env.torch, env.python].join(" / ")],
    ["CPU", (env.cpu || "unknown") + " (" + (env.threads || "?") + " torch threads)"], ["GPU", env.gpu || "unknown"],
    ["Date (newest run)", h.date || "unknown"], ["Runs", plain(h.n_runs) + " (" + plain(h.n_failed) + " failed)"],
    ["Compute time (sum over runs)", seconds(h.compute_seconds)]];
  const box = document.getElementById("facts");
  facts.forEach(function (f) {
    box.append(el("div", { class: f[0].startsWith("Last completed command") ? "wide" : null }, [el("dt", { text: f[0] }), el("dd", { text: f[1] })]));
  });
  document.getElementById("quick-note").hidden = !h.quick;
}

// Selection changes only marks (no redraw), so the focused row stays the focused element.
function select(key, fromPlot) {
  STATE.sel = key;
  document.querySelectorAll("#board tbody tr").forEach(function (tr) {
    const on = tr.dataset.key === key;
    tr.classList.toggle("selected", on);
    if (on) tr.setAttribute("aria-current", "true"); else tr.removeAttribute("aria-current");
  });
  document.querySelectorAll("#plot .pt").forEach(function (g) {
    const on = g.dataset.key === key;
    g.classList.toggle("selected", on);
    g.setAttribute("aria-pressed", on ? "true" : "false");
  });
  saveHash();
  const tr = rowElement(key);
  if (tr && fromPlot) { tr.focus({ preventScroll: true }); tr.scrollIntoView({ block: "center" }); }
}

function update() {
  const rows = visibleRows();
  renderTable(rows);
  renderPlot(rows);
  document.getElementById("count").textContent = rows.length + " of " + ROWS.length + " rows";
  saveHash();
}

function restore() {
  STATE = stateFromHash(location.hash);
  syncControls();
  update();
}

function init() {
  renderFacts();
  buildFilters();
  const axis = document.getElementById("x-axis");
  Object.keys(AXES).forEach(function (k) { axis.append(el("option", { value: k, text: AXES[k].label })); });
  axis.addEventListener("change", function () { STATE.x = axis.value; update(); });
  document.getElementById("download").addEventListener("click", downloadCsv);
  document.getElementById("reset").addEventListener("click", function () { STATE = defaultState(); syncControls(); update(); });
  wireTable();
  wireDetail();
  window.addEventListener("hashchange", function () {
    if (location.hash !== hashFromState(STATE)) restore();
  });
  restore();
  const tr = STATE.sel && rowElement(STATE.sel);
  if (tr) tr.scrollIntoView({ block: "center" });
  // for scripts and tests: the filtered view as the CSV download holds it, and the rows' keys
  window.kdbenchPage = { csv: function () { return csvText(visibleRows()); },
                         keys: function () { return visibleRows().map(function (r) { return r._key; }); } };
}

init();
