"""The leaderboard's fixed prose: how to read its tables (the legend closing the page) and the
introduction of its sequential section. Kept apart from the code that fills the tables, so the
text can be read, and changed, as text."""

from kdbench.families.sequential import MAX_SEQUENCE_LENGTH

LEGEND = """### How to read these tables

- One table per dataset and teacher → student pairing; rows ranked by mean NDCG@10 over seeds, best
  first. **teacher (model)** is the teacher itself (one run, the reference); **scratch** is the student
  trained without distillation (the baseline every test compares against).
- Compression rows (family `compression`, or `+compression` after a distillation family: SVD,
  pruning, quantisation, and a distilled student quantised afterwards) stand beside the distilled
  students as reference rows, like the teacher's: another deployed format (sizes in bytes in the
  cost table), compared with the same scratch but neither numbered nor ranked, outside the top group,
  and Holm-corrected among themselves, so that they change no distillation method's rank, top group
  or p Holm. The compression frontier below compares them with the distilled students size for size.
- `#` numbers the distilled students in table order. rank [95% CI]: the student's rank by mean
  NDCG@10 (the teacher is not ranked) and, in brackets, a 95% bootstrap interval of that rank among
  the table's students: 2,000 draws of the seeds with replacement, then of the users, the same draws
  for every student (seed s and user u are paired across students), fixed generator seed. Descriptive only:
  with 3-5 seeds the seed level has few distinct resamples and the interval under-covers; the top
  group is the test. Columns `rank`, `rank_low`, `rank_high` in the CSV and JSON.
- top group (★): the students not significantly worse than the leader (the best-ranked student,
  "p vs leader" empty): the leader is tested against every other student with the primary test
  below (seed-bounded, paired by seed and user), Holm-corrected over those comparisons; a student
  leaves the group when the leader is ahead and that p < 0.05. It is a confidence set for the best
  student (the truly best one is left out at most about 5% of the time), not a ranking: order within
  it is not established, and a student outside it may have a higher mean than one inside (each is
  tested against the leader only, with its own paired variance). Columns `top_group`,
  `p_value_vs_leader`, `p_value_vs_leader_holm`.
- p vs leader (`p_value_vs_leader_holm`): that Holm-corrected p of the test against the leader.
- ⁂ after a strategy's name: the teacher was trained further during distillation (BD); its row
  compares a student distilled from a co-trained teacher, not from the cached teacher of the other
  rows (the teacher row and `of teacher` still refer to the cached one).
- NDCG@10, NDCG@20, Recall@10, Recall@20: full-ranking test metrics (RecBole), mean ± sample standard
  deviation over seeds (no ± with a single seed).
- † / ‡ after NDCG@10: the primary test below gives p < 0.05 / p < 0.01 against scratch after the
  Holm-Bonferroni correction over the distillation strategies of the table (the compression rows
  over their own; either direction, read the sign in "vs scratch"). The correction keeps the chance
  of any false mark in a table at 5% / 1%.
- vs scratch: relative change of mean NDCG@10 against scratch's mean, in %, and in brackets its 95%
  confidence interval (same model as p; not corrected for the several comparisons, so an interval can
  exclude 0 without a mark).
- of teacher: mean NDCG@10 as a share of the teacher's NDCG@10, in %.
- p (`p_value_mixed`, primary): two-sided test of the mean per-user, per-seed difference against
  scratch. Each seed's run is paired with scratch's run of the same seed, and users by id; the
  differences are modelled as overall effect + seed effect + user effect + residual (a linear mixed
  model with crossed random effects, solved in closed form), so both seed-to-seed and user-to-user
  variance widen the interval. Seed-variance floor: the seeds are the unit of replication, so the
  variance is never below that of the paired t-test over the seeds' mean differences and the t
  quantile has seeds - 1 degrees of freedom; no p-value claims more precision than the seeds allow
  (with few seeds the estimated seed variance can fall to zero by chance, and a test over users alone
  would then give p = 1e-20). The interval in "vs scratch" and the light / heavy columns use the same
  test. Needs two shared seeds. p Holm (`p_value_holm`): that p after the Holm-Bonferroni correction;
  the marks come from it.
- Smallest detectable change (below each quality table): the relative change the primary test (with
  the same floor) would detect with 80% power at Holm's strictest level, from the table's median
  variance components; an unmarked strategy may still differ from scratch by less than this. More
  seeds shrink the seed part and add degrees of freedom, so the figure falls fast from 3 to 10 seeds.
- `p_value_vs_scratch` (CSV and JSON only, diagnostic): two-sided Wilcoxon signed-rank test over test
  users of each user's NDCG@10 averaged over the shared seeds (users with equal values dropped). It
  does not see seed-to-seed variance, so it overstates significance when seeds disagree; the page
  does not print it.
- p seeds (`p_value_seeds`, secondary): two-sided paired t-test over the per-seed mean NDCG@10 (paired
  by seed; needs two shared seeds). It does not see user-to-user variance, and with few seeds it has
  little power. It (and `p_value_vs_scratch`) is 1 when the runs equal scratch's exactly.
- seeds: successful seeds aggregated. failed: runs that failed (listed under "Failed runs").
- params: parameters used at inference (training-only modules excluded). × smaller: teacher params /
  params. MB: model size on disk. bytes (inference table): the deployed model's size, the size axis
  of the plots: 4 a float32 parameter or buffer, a compressed model's own format (CSR values and
  indices, packed integer codes and per-row scales); "—" where the cost file predates it.
- users/s [IQR]: inference throughput of the row's model *shape* (full-catalogue scoring and top-20 for
  batches of 256 users) on the dataset's catalogue: users per second of the median call, in brackets of
  the slower and the faster quartile call. ms/user: median latency of scoring and ranking the whole
  catalogue for one user. Both come from `python -m kdbench cost` (warm-up, then repeated calls, the
  teacher and its students interleaved in one process, randomly initialised weights), not from the
  runs: every student of a pairing has the same shape, hence the same figure. "Inference cost per model
  shape" below gives every shape at the dataset's and at synthetic deployment-size catalogues.
- s/epoch: training seconds per epoch (optimisation only), mean over seeds; epoch × scratch: each seed's
  epoch time over scratch's mean epoch time, mean ± standard deviation over seeds (the overhead of
  distilling); prepare s: the strategy's one-off knowledge preparation (the teacher's rankings, ...);
  s to best: training seconds to the best model, prepare s + s/epoch × best epoch (validation passes
  excluded), mean ± sd over seeds; ensemble teachers s: wall seconds of training the teachers the
  strategy needs beyond the pairing's (HetComp's ensemble, with their trajectories), once per dataset
  and shared by its seeds, a price s to best leaves out (blank: none needed; — where the records
  predate the figure, 2026-12-08); best epoch: mean epoch of the restored model. cap hit: share of seeds
  that stopped at the epoch limit rather than by early stopping (their quality may be understated).
- pareto.png: NDCG@10 against parameters (top) and against training seconds to the best model (bottom,
  the price of each method; horizontal bar ± sd over seeds); up-left is better in both; the dashed
  line joins the points no other point beats on both axes; the dotted line is scratch, and a strategy's
  vertical bar is the 95% interval of its difference from scratch. Students of one pairing share a
  parameter count, so their points are spread slightly sideways to stay readable. One column per
  dataset and teacher: the pairing with the most strategies (a size sweep's other sizes are in
  compression.png).
- Compression (when strategies were run at several student sizes): compression.png draws NDCG@10 (mean,
  95% t-interval over seeds) against the student's parameters per strategy, the teacher as a dashed
  line (top), and the share of the teacher's NDCG@10 kept against the compression ratio (bottom).
- Speed-up: the teacher's median call time over the student's at one catalogue (how many times more
  users/s the student serves), beside the same ratio for the bare roofline (U @ I.T + top-20) of their
  two sizes, measured in the same sitting; "within 20%": the two agree to 20%.
- Wall time: the whole `run` invocation that wrote these runs; compute time: the sum of the runs' own
  wall times (a teacher loaded from the cache counts only its loading).
- The CSV and JSON beside this file hold every column at 6 significant digits.
"""

SEQUENTIAL_INTRO = f"""# Sequential recommenders

Teacher and students are RecBole sequential models (SASRec, GRU4Rec) under `leave-one-out`: per
user, interactions by timestamp, the last one is the test target and the one before it the
validation target; a query is the user's last {MAX_SEQUENCE_LENGTH} items before the prediction point; full ranking
over all items, nothing masked but the padding item. Cost columns are per query: users/s is queries
per second on batches of 256 test queries (scoring every item and taking the top 20), ms/user the
median latency of one query, measured once per shape by `python -m kdbench cost` (an IQR over its
interleaved repeats, as for the general shapes); a shape it has not measured falls back to the runs
themselves (`cost` in each run file; [min, max] over seeds instead of an IQR)."""
