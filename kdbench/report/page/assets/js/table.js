// table.js: filters, column chooser and the sortable table; rows are focusable and open their details.
function buildFilters() {
  const box = document.getElementById("filters");
  FILTERS.forEach(function (f) {
    const select = el("select", { id: "f-" + f.id, "data-filter": f.id }, [el("option", { value: "", text: "all" })]);
    filterOptions(f).forEach(function (v) { select.append(el("option", { value: v, text: f.text ? f.text(v) : v })); });
    select.addEventListener("change", function () { STATE[f.id] = select.value; update(); });
    box.append(el("label", { for: "f-" + f.id }, [f.label, select]));
  });
  const sig = el("input", { type: "checkbox", id: "f-sig" });
  sig.addEventListener("change", function () { STATE.sig = sig.checked; update(); });
  box.append(el("label", { class: "check", for: "f-sig" }, [sig, "Significant only (p Holm < 0.05)"]));
  const search = el("input", { type: "search", id: "f-q", placeholder: "strategy, family, model…", autocomplete: "off" });
  search.addEventListener("input", function () { STATE.q = search.value.trim(); update(); });
  box.append(el("label", { for: "f-q" }, ["Search", search]));
  const chooser = document.getElementById("columns");
  COLUMNS.forEach(function (c) {
    const box2 = el("input", { type: "checkbox", id: "c-" + c.id, value: c.id });
    box2.addEventListener("change", function () {
      STATE.cols = COLUMNS.map(function (k) { return k.id; }).filter(function (id) {
        return document.getElementById("c-" + id).checked;
      });
      update();
    });
    chooser.append(el("label", { for: "c-" + c.id }, [box2, " " + c.label]));
  });
}

function syncControls() {
  FILTERS.forEach(function (f) {
    const select = document.getElementById("f-" + f.id);
    if (STATE[f.id] && !Array.from(select.options).some(function (o) { return o.value === STATE[f.id]; })) {
      select.append(el("option", { value: STATE[f.id], text: STATE[f.id] + " (no rows)" }));
    }
    select.value = STATE[f.id];
  });
  document.getElementById("f-sig").checked = STATE.sig;
  const search = document.getElementById("f-q");
  if (search.value.trim() !== STATE.q) search.value = STATE.q;
  COLUMNS.forEach(function (c) { document.getElementById("c-" + c.id).checked = STATE.cols.indexOf(c.id) >= 0; });
  document.getElementById("x-axis").value = STATE.x;
}

function shownColumns() {
  return COLUMNS.filter(function (c) { return STATE.cols.indexOf(c.id) >= 0; });
}

function renderTable(rows) {
  const table = document.getElementById("board");
  const columns = shownColumns();
  const head = el("tr", {}, columns.map(function (c) {
    const sorted = STATE.sort === c.id;
    const direction = sorted ? (STATE.dir === "desc" ? "descending" : "ascending") : "none";
    const button = el("button", { type: "button", "data-sort": c.id, title: c.title || null }, [
      c.label, " ", el("span", { class: "dir", "aria-hidden": "true", text: sorted ? (STATE.dir === "desc" ? "▼" : "▲") : "" })]);
    button.addEventListener("click", function () { sortBy(c.id); });
    return el("th", { scope: "col", class: c.num ? "num" : null, "aria-sort": direction }, [button]);
  }));
  table.tHead.replaceChildren(head);
  const body = rows.map(function (row) {
    const classes = [row.family === "teacher" ? "teacher" : "", row.method === "scratch" ? "scratch" : "",
                     row._key === STATE.sel ? "selected" : ""].filter(Boolean).join(" ");
    const tr = el("tr", { tabindex: "0", "data-key": row._key, class: classes || null,
                          "aria-current": row._key === STATE.sel ? "true" : null,
                          "aria-label": rowTitle(row) + ". Press Enter for details." },
      columns.map(function (c) {
        const classes = [c.num ? "num" : "", c.id === "strategy" ? "name" : "", c.wrap ? "wrap" : ""].filter(Boolean);
        return el("td", { class: classes.join(" ") || null }, c.wrap ? breakable(c.text(row)) : [c.text(row)]);
      }));
    return tr;
  });
  table.tBodies[0].replaceChildren.apply(table.tBodies[0], body);
}

// Long labels (dcd@K=40,item_weight=0.0,top_n=100) may wrap after a comma and before an @.
function breakable(text) {
  const out = [];
  String(text).split(/(?=@)|(?<=,)/).forEach(function (part, i) { if (i) out.push(el("wbr")); out.push(part); });
  return out;
}

function sortBy(id) {
  if (STATE.sort === id) STATE.dir = STATE.dir === "asc" ? "desc" : "asc";
  else { STATE.sort = id; STATE.dir = COLUMN_BY_ID[id].num && id !== "rank" ? "desc" : "asc"; }
  update();
  const button = document.querySelector('#board th button[data-sort="' + id + '"]');
  if (button) button.focus();
}

function rowElement(key) {
  return Array.from(document.querySelectorAll("#board tbody tr")).find(function (tr) { return tr.dataset.key === key; });
}

function wireTable() {
  const body = document.querySelector("#board tbody");
  body.addEventListener("click", function (event) {
    const tr = event.target.closest("tr");
    if (tr) { select(tr.dataset.key, false); openDetail(tr.dataset.key); }
  });
  body.addEventListener("keydown", function (event) {
    const tr = event.target.closest("tr");
    if (!tr) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(tr.dataset.key, false);
      openDetail(tr.dataset.key);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) next.focus();
    }
  });
}

function csvText(rows) {
  return DATA.csv_header + "\n" + rows.map(function (r) { return r._csv + "\n"; }).join("");
}

function downloadCsv() {
  const blob = new Blob([csvText(visibleRows())], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: "kdbench-leaderboard-view.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
}
