"""What a leaderboard row holds: its columns, named from the primary metric, and the statistical
levels behind them. The CSV and JSON carry `COLUMNS` in this order; the Markdown shows a selection.
"""

from __future__ import annotations

from kdbench.evaluation.beyond import BEYOND_METRICS
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.report.groups import GROUP_COLUMNS
from kdbench.run.record import METRICS

CONFIDENCE, POWER = 0.95, 0.8  # of the relative-change interval; of the minimum detectable effect

# The primary metric's derived columns.
PRIMARY_MEAN, PRIMARY_STD = f"{PRIMARY_METRIC}_mean", f"{PRIMARY_METRIC}_std"  # over a row's ok seeds
VS_SCRATCH = f"{PRIMARY_METRIC}_vs_scratch_pct"  # relative change of the mean vs scratch's, in %
TEACHER_PRIMARY = f"teacher_{PRIMARY_METRIC}"  # the teacher's test value (a run's, or a table's)
RETAINED = f"teacher_{PRIMARY_METRIC}_retained_pct"  # the mean as a share of the teacher's, in %
TUNED_VS_DEFAULTS = f"{PRIMARY_METRIC}_tuned_vs_defaults_pct"  # a tuned row against its defaults row, in %
PRIMARY_CI_LOW, PRIMARY_CI_HIGH = f"{PRIMARY_METRIC}_ci_low", f"{PRIMARY_METRIC}_ci_high"  # compression curves

COLUMNS = (
    "dataset", "pairing", "teacher", "student", "variant", "strategy", "method", "family", "model", "rank",
    "rank_low", "rank_high", "top_group",
    "tuning_trials", "tuning_budget", "tuning_budget_unit", "tuning_epochs_spent", "n_seeds", "n_failed",
    *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
    VS_SCRATCH, "rel_change_ci_low", "rel_change_ci_high", RETAINED,
    "p_value_mixed", "p_value_holm", "p_value_vs_scratch", "p_value_seeds", "n_paired_seeds", "n_users_tested",
    "p_value_vs_leader", "p_value_vs_leader_holm",
    "diff_var_seed", "diff_var_user", "diff_var_residual",
    "params", "compression_vs_teacher", "size_bytes",
    "throughput_users_per_s", "throughput_iqr_low", "throughput_iqr_high", "latency_p50_ms",
    "train_s_per_epoch", "epoch_time_ratio_vs_scratch", "epoch_time_ratio_std",
    "kd_prepare_s_mean", "kd_prepare_s_std", "time_to_best_s_mean", "time_to_best_s_std",
    "ensemble_teachers_s_mean",
    "best_epoch_mean", "epochs_run_mean", "hit_epoch_cap_share", "compute_seconds", TUNED_VS_DEFAULTS,
    "teacher_trained_further", *GROUP_COLUMNS, *(f"{metric}_mean" for metric in BEYOND_METRICS),
)
