// columns.js: the table's columns (value: what sorting compares; text: what the cell shows).
function col(id, label, value, text, options) {
  return Object.assign({ id: id, label: label, value: value, text: text, num: true, show: false, wrap: false }, options || {});
}
function field(name) { return function (row) { return row[name]; }; }
const COLUMNS = [
  col("rank", "#", field("rank"), function (r) { return finite(r.rank) ? String(r.rank) : ""; },
      { show: true, title: "rank among the distilled students of its table (dataset, pairing, variant); none for the teacher and the compression rows" }),
  col("strategy", "Strategy", field("strategy"), rowName, { num: false, show: true, wrap: true }),
  col("family", "Family", field("family"), function (r) { return r.family || ""; }, { num: false, show: true }),
  col("dataset", "Dataset", field("dataset"), function (r) { return r.dataset; }, { num: false, show: true }),
  col("pairing", "Pairing", field("pairing"), function (r) { return arrow(r.pairing); }, { num: false, show: true, wrap: true }),
  col("variant", "Variant", field("variant"), function (r) { return r.variant; }, { num: false, show: true }),
  col("ndcg10", "NDCG@10", field("ndcg@10_mean"), function (r) {
    const m = mark(r);
    return meanStd(r["ndcg@10_mean"], r["ndcg@10_std"], 4) + (m ? " " + m : "");
  }, { show: true, title: "mean ± sd over seeds; † / ‡: p Holm < 0.05 / 0.01 against scratch" }),
  col("vs_scratch", "vs scratch [95% CI]", field("ndcg@10_vs_scratch_pct"), function (r) {
    const ci = finite(r.rel_change_ci_low) && finite(r.rel_change_ci_high)
      ? " [" + signedFixed(r.rel_change_ci_low, 1) + ", " + signedFixed(r.rel_change_ci_high, 1) + "]" : "";
    return pct(r["ndcg@10_vs_scratch_pct"], true) + ci;
  }, { show: true, title: "relative change of mean NDCG@10 against scratch, in %, and its 95% interval" }),
  col("retained", "of teacher", field("teacher_ndcg@10_retained_pct"), function (r) { return pct(r["teacher_ndcg@10_retained_pct"]); }),
  col("ndcg20", "NDCG@20", field("ndcg@20_mean"), function (r) { return meanStd(r["ndcg@20_mean"], r["ndcg@20_std"], 4); }),
  col("recall10", "Recall@10", field("recall@10_mean"), function (r) { return meanStd(r["recall@10_mean"], r["recall@10_std"], 4); }),
  col("recall20", "Recall@20", field("recall@20_mean"), function (r) { return meanStd(r["recall@20_mean"], r["recall@20_std"], 4); }),
  col("p", "p", field("p_value_mixed"), function (r) { return pValue(r.p_value_mixed); },
      { title: "primary test against scratch (crossed mixed model over seeds and users)" }),
  col("p_holm", "p Holm", field("p_value_holm"), function (r) { return pValue(r.p_value_holm); },
      { show: true, title: "p after the Holm-Bonferroni correction over the strategies of the table" }),
  col("p_leader", "p vs leader", field("p_value_vs_leader_holm"), function (r) { return pValue(r.p_value_vs_leader_holm); },
      { title: "Holm-corrected p of the test of the table's leader against this student (seed-bounded)" }),
  col("rank_ci", "rank [95% CI]", field("rank"), function (r) {
    if (!finite(r.rank)) return "";
    return finite(r.rank_low) && finite(r.rank_high) ? r.rank + " [" + r.rank_low + "–" + r.rank_high + "]" : String(r.rank);
  }, { title: "the student's rank and a 95% bootstrap interval of it (seeds, then users; descriptive)" }),
  col("top", "top group", field("top_group"), function (r) { return r.top_group === true ? "★" : ""; },
      { num: false, show: true, title: "★: not significantly below the table's leader (tests against the leader, Holm)" }),
  col("p_seeds", "p seeds", field("p_value_seeds"), function (r) { return pValue(r.p_value_seeds); }),
  col("seeds", "Seeds", field("n_seeds"), function (r) { return plain(r.n_seeds); }, { show: true }),
  col("failed", "Failed", field("n_failed"), function (r) { return plain(r.n_failed); }),
  col("params", "Params", field("params"), function (r) { return grouped(r.params); }),
  col("smaller", "× smaller", field("compression_vs_teacher"), function (r) { return fixed(r.compression_vs_teacher, 1); }),
  col("bytes", "Size", field("size_bytes"), function (r) { return bytes(r.size_bytes); }, { show: true, title: "model size on disk" }),
  col("users_s", "users/s", field("throughput_users_per_s"), function (r) { return grouped(r.throughput_users_per_s); }),
  col("ms_user", "ms/user", field("latency_p50_ms"), function (r) { return fixed(r.latency_p50_ms, 3); },
      { show: true, title: "median latency of scoring and ranking the catalogue for one user" }),
  col("s_epoch", "s/epoch", field("train_s_per_epoch"), function (r) { return fixed(r.train_s_per_epoch, 3); }),
  col("epoch_ratio", "epoch × scratch", field("epoch_time_ratio_vs_scratch"), function (r) {
    return meanStd(r.epoch_time_ratio_vs_scratch, r.epoch_time_ratio_std, 2);
  }),
  col("prepare", "prepare s", field("kd_prepare_s_mean"), function (r) { return meanStd(r.kd_prepare_s_mean, r.kd_prepare_s_std, 1); }),
  col("to_best", "s to best", field("time_to_best_s_mean"), function (r) {
    return meanStd(r.time_to_best_s_mean, r.time_to_best_s_std, 0);
  }, { show: true, title: "training seconds to the best model, mean ± sd over seeds" }),
  col("ensemble", "ensemble teachers s", field("ensemble_teachers_s_mean"), function (r) {
    return r.ensemble_teachers_s_mean === 0 ? "" : grouped(r.ensemble_teachers_s_mean);
  }, { title: "seconds training the teachers the strategy needs beyond the pairing's (HetComp's ensemble), once per dataset" }),
  col("best_epoch", "best epoch", field("best_epoch_mean"), function (r) { return fixed(r.best_epoch_mean, 0); }),
  col("cap", "cap hit", field("hit_epoch_cap_share"), function (r) {
    return finite(r.hit_epoch_cap_share) ? pct(r.hit_epoch_cap_share * 100, false, 0) : "—";
  }),
  col("trials", "Trials", field("tuning_trials"), function (r) { return finite(r.tuning_trials) ? String(r.tuning_trials) : ""; }),
  col("vs_defaults", "tuned vs defaults", field("ndcg@10_tuned_vs_defaults_pct"), function (r) {
    return pct(r["ndcg@10_tuned_vs_defaults_pct"], true);
  }),
  col("compute", "compute", field("compute_seconds"), function (r) { return seconds(r.compute_seconds); },
      { title: "sum of the runs' wall times" }),
];
const COLUMN_BY_ID = {};
COLUMNS.forEach(function (c) { COLUMN_BY_ID[c.id] = c; });
const DEFAULT_COLUMNS = COLUMNS.filter(function (c) { return c.show; }).map(function (c) { return c.id; });
const COLLATOR = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

// Numbers compare as numbers, text naturally (BPR:5 before BPR:10); missing values last either way.
function compareRows(column, direction) {
  const sign = direction === "desc" ? -1 : 1;
  return function (a, b) {
    const x = column.value(a), y = column.value(b);
    const xMissing = x === null || x === undefined || (typeof x === "number" && !isFinite(x)) || x === "";
    const yMissing = y === null || y === undefined || (typeof y === "number" && !isFinite(y)) || y === "";
    if (xMissing || yMissing) return xMissing === yMissing ? a._index - b._index : xMissing ? 1 : -1;
    let order;
    if (typeof x === "number" && typeof y === "number") order = x - y;
    else if (typeof x === "boolean" || typeof y === "boolean") order = Number(x) - Number(y);
    else order = COLLATOR.compare(String(x), String(y));
    return order ? sign * order : a._index - b._index;
  };
}
