// detail.js: a row's runs, statistics, settings, tuning study, environment and rerun commands.
function keyValues(pairs) {
  return el("dl", { class: "kv" }, pairs.reduce(function (out, pair) {
    out.push(el("dt", { text: pair[0] }), el("dd", {}, [pair[1] instanceof Node ? pair[1] : plain(pair[1])]));
    return out;
  }, []));
}

function flat(object, prefix, out) {  // {"train": {"learning_rate": 0.005}} -> [["train.learning_rate", 0.005]]
  out = out || [];
  Object.keys(object || {}).sort().forEach(function (k) {
    const v = object[k], name = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flat(v, name, out); else out.push([name, v]);
  });
  return out;
}

function assignments(object) {  // {"K": 51, "weight": 0.11223} -> "K=51, weight=0.1122"
  return flat(object).map(function (kv) {
    return kv[0] + "=" + (typeof kv[1] === "number" ? String(Number(kv[1].toPrecision(4))) : plain(kv[1]));
  }).join(", ") || "—";
}

function smallTable(headers, rows, numeric) {
  return el("div", { class: "scroll" }, [el("table", {}, [
    el("thead", {}, [el("tr", {}, headers.map(function (h, i) { return el("th", { scope: "col", class: numeric[i] ? "num" : null, text: h }); }))]),
    el("tbody", {}, rows.map(function (cells) {
      return el("tr", {}, cells.map(function (c, i) { return el("td", { class: numeric[i] ? "num" : null }, [c]); }));
    }))])]);
}

function statistics(row) {
  const ci = finite(row.rel_change_ci_low) ? "[" + signedFixed(row.rel_change_ci_low, 1) + "%, " +
    signedFixed(row.rel_change_ci_high, 1) + "%]" : "—";
  return keyValues([
    ["NDCG@10 (mean ± sd over seeds)", COLUMN_BY_ID.ndcg10.text(row)],
    ["vs scratch", pct(row["ndcg@10_vs_scratch_pct"], true)], ["95% interval of the change", ci],
    ["p (mixed model, primary)", pValue(row.p_value_mixed)], ["p Holm (marks)", pValue(row.p_value_holm)],
    ["p vs leader (Holm)", pValue(row.p_value_vs_leader_holm)], ["p seeds (paired t)", pValue(row.p_value_seeds)],
    ["paired seeds / users tested", plain(row.n_paired_seeds) + " / " + plain(row.n_users_tested)],
    ["of teacher's NDCG@10", pct(row["teacher_ndcg@10_retained_pct"])],
    ["params / size", grouped(row.params) + " / " + bytes(row.size_bytes)],
    ["users/s / ms per user", grouped(row.throughput_users_per_s) + " / " + fixed(row.latency_p50_ms, 3)],
    ["s to best (mean ± sd)", COLUMN_BY_ID.to_best.text(row)],
  ]);
}

function seedTable(row) {
  const headers = ["seed", "status", "NDCG@10", "NDCG@20", "Recall@10", "Recall@20", "valid NDCG@10", "best epoch",
                   "epochs", "s/epoch", "wall s", "created", "run file", "log"];
  const numeric = [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0];
  const rows = row._runs.map(function (run) {
    const test = run.test || {}, training = run.training || {};
    return [String(run.seed), run.status + (run.error ? ": " + run.error : ""), fixed(test["ndcg@10"], 4),
            fixed(test["ndcg@20"], 4), fixed(test["recall@10"], 4), fixed(test["recall@20"], 4),
            fixed(run["valid_ndcg@10"], 4), plain(training.best_epoch), plain(training.epochs_run),
            fixed(training.seconds_per_epoch, 3), fixed(run.wall_seconds, 1), plain(run.created),
            el("a", { href: runHref(run), text: "seed" + run.seed + ".json" }), el("a", { href: logHref(run), text: "log" })];
  });
  return smallTable(headers, rows, numeric);
}

function settings(row) {
  const configs = Array.from(new Set(row._runs.map(function (r) { return r.config; })));
  const config = configs.length ? DATA.configs[configs[0]] : {};
  const hparams = flat(config.hparams || {});
  const out = [el("h3", { text: "Hyperparameters (resolved)" }),
               hparams.length ? keyValues(hparams) : el("p", { text: "none (the strategy has no hyperparameters, or this is the teacher)" }),
               el("h3", { text: "Training and protocol" }),
               keyValues(flat(config).filter(function (kv) { return kv[0].indexOf("hparams.") !== 0; }))];
  if (configs.length > 1) out.push(el("p", { class: "note", text: "The seeds were run with " + configs.length + " different settings; the first is shown." }));
  return out;
}

function tuning(row) {
  const study = row._study;
  if (!study) return [];
  const out = [el("h3", { text: "Tuning study" }), keyValues([
    ["budget / counted", plain(study.budget) + " / " + plain(study.trials_counted)],
    ["complete / pruned / failed / interrupted", [study.trials_complete, study.trials_pruned, study.trials_failed,
      study.trials_interrupted].map(plain).join(" / ")],
    ["best trial (validation NDCG@10)", plain(study.best_trial) + " (" + fixed(study["best_valid_ndcg@10"], 4) + ")"],
    ["best hyperparameters", assignments(study.best_hparams)], ["best training", assignments(study.best_training)],
    ["search space", Object.keys(study.space || {}).sort().map(function (k) { return k + ": " + study.space[k]; }).join("; ")], ["summary", el("a", { href: encodeURI(study.file), text: study.file })]])];
  if (study.trials && study.trials.length) {
    out.push(smallTable(["trial", "state", "validation NDCG@10", "parameters"], study.trials.map(function (t) {
      return [String(t.number), t.state + (t.interrupted ? " (interrupted, not counted)" : ""), fixed(t.value, 4),
              assignments(t.params)];
    }), [1, 0, 1, 0]));
  }
  return out;
}

function commands(row) {
  const out = [el("h3", { text: "Rerun" }),
    el("p", { class: "hint", text: "From the folder that holds the results folder, each command runs that seed again in a " +
      "scratch folder and compares its metrics with the stored ones (the stored file is not touched):" })];
  row._runs.forEach(function (run) { out.push(el("pre", {}, [el("code", { class: "command", text: rerunCommand(run) })])); });
  out.push(el("p", { class: "hint", text: "Logs are written beside each run file by the run that made it; they are not " +
    "committed to git, so a log link works only where the runs were made." }));
  return out;
}

function openDetail(key) {
  const row = ROWS.find(function (r) { return r._key === key; });
  if (!row) return;
  const dialog = document.getElementById("detail");
  document.getElementById("detail-title").textContent = rowTitle(row);
  const env = row._runs.length ? DATA.environments[row._runs[0].env] : {};
  const body = [el("div", { class: "cols2" }, [
      el("div", {}, [el("h3", { text: "Quality and significance" }), statistics(row)]),
      el("div", {}, [el("h3", { text: "Environment" }), keyValues(flat(env))].concat(commands(row)))]),
    el("h3", { text: "Per seed (" + row._runs.length + " run" + (row._runs.length === 1 ? "" : "s") + ")" }),
    row._runs.length ? seedTable(row) : el("p", { text: "No stored run matches this row." })]
    .concat(settings(row), tuning(row));
  document.getElementById("detail-body").replaceChildren.apply(document.getElementById("detail-body"), body);
  dialog.dataset.key = key;
  if (!dialog.open) dialog.showModal();
  document.getElementById("detail-close").focus();
}

function wireDetail() {
  const dialog = document.getElementById("detail");
  document.getElementById("detail-close").addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("click", function (event) { if (event.target === dialog) dialog.close(); });
  dialog.addEventListener("close", function () {
    const tr = rowElement(dialog.dataset.key);
    if (tr) tr.focus();
  });
}
