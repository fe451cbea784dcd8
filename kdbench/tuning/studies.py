"""Fair tuning: every strategy of a pairing, `scratch` included, gets the same Optuna budget,
counted in training epochs.

One study per (dataset, pairing, strategy), stored in Optuna's SQLite storage at
`<results>/tuning/<dataset>/<pairing>/<strategy>.db` (open it with `optuna.load_study`), with the
chosen hyperparameters in a readable `<strategy>.json` beside it. A trial trains the student on
the tuning seeds (two by default, disjoint from the evaluation seeds) with hyperparameters drawn
from the strategy's `search_space` plus the shared training knobs (`SHARED_TRAINING_SPACE`); its
objective is the mean over the seeds of the best validation NDCG@10. The test split is never
scored while tuning.

- Trial 0 of every study is the strategy's published defaults with the suite's training settings
  (Optuna `enqueue_trial`), never pruned, so a tuned row is never chosen below its defaults on
  validation.
- The budget is the training epochs of all trials and seeds together (`epochs`), the same for
  every strategy of a pairing: a pruned trial spends only the epochs it ran, and a study asks for
  trials until its budget is spent (the last one is stopped where the budget ends). Suites written
  before give `trials` instead: a budget of that many trials, as then.
- Multi-fidelity pruning (`trial.PrunerSettings`): successive halving on epochs by default.

Trials run through the executors as workers free up: the studies take turns, each with at most one
trial running (TPE, seeded per study and trial number, so a resumed study draws what an
uninterrupted one would), and a study whose trial returned is back in turn at once, so a long trial
never leaves the other workers waiting for a round to end; the driver alone writes the storage.
Every worker keeps the loaded teacher for the next trial (`work.load_teacher`). A killed study resumes where it
stopped: a trial that was running is marked failed ("interrupted") and spends no budget, and its
parameters are asked again first: the new trial continues the interrupted one's training where it
was kept (`tuning.resume`); finished trials are never repeated. Two processes tuning the same study take turns (`claim_study`): the
second waits, then resumes the study, which is finished or refused if made with other settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from kdbench.store import atomic
from kdbench.run.cells import TEACHER, TUNED, Cell, identity_differences
from kdbench.data.location import recorded_data_path
from kdbench.errors import KdbenchError
from kdbench.run.record import dataset_label, safe_name
from kdbench.run import claims
from kdbench.run.claims import Claim, try_claim, wait_until_free
from kdbench.run.runner import Runner
from kdbench.run.teachers import learns_from_trajectories, needs_teacher
from kdbench.search_space import SHARED_TRAINING_SPACE, Distribution, recordable
from kdbench.store.reading import DamagedFile
from kdbench.strategies import STRATEGIES, strategy_code
from kdbench.strategies.base import tuned_through
from kdbench.tuning.storage import check_storage
from kdbench.tuning.settings import TuningSettings
from kdbench.tuning.resume import discard as discard_trial
from kdbench.training.resume import run_key
from kdbench.tuning.trial import TrialOutcome, TrialTask, run_trial, split_params
from kdbench.run.work import CellTask, TeacherArtifact

INTERRUPTED = "interrupted"
DEFAULTS = "defaults"  # user attribute of the published-defaults trial
HPARAMS = "hparams"  # user attribute: what the trial trains with (the sampler may record it otherwise)
# identity key: the trials trained with the study's fixed hyperparameters (`tuning.trial`)
FIXED_IN_TRIALS = "fixed_hparams_in_trials"
RESUMES = "resumes"  # user attribute: the interrupted trial whose parameters (and kept progress) this one takes
PROGRESS = "progress"  # user attribute: the key of the trial's kept progress (`tuning.resume`)


@dataclass
class Study:
    """One study: a strategy on a pairing, its storage and its search space."""

    cell: Cell  # the suite's cell for this strategy (seed replaced by the tuning seeds)
    n_items: int
    root: Path
    data_fingerprint: str | None = None  # the hash of the split it tunes on (None: not loaded)
    # Digests of knowledge the trials learn from that the settings do not pin down: the ensemble's
    # trajectories (`TeacherArtifact.trajectory_digest`, HetComp), set once the teachers are loaded.
    knowledge: tuple[str, ...] = ()

    @property
    def pairing(self) -> str:
        return self.cell.pairing

    @property
    def label(self) -> str:
        """What the study tunes: the strategy (`teacher` for a pairing's teacher study)."""
        return self.cell.strategy

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.pairing}/{self.label}"

    @property
    def dataset(self) -> str:
        """The dataset, with the protocol when it is not the default (`citeulike-t@ordered`)."""
        return dataset_label(self.cell.dataset, self.cell.protocol)

    @property
    def folder(self) -> Path:
        return self.root / "tuning" / safe_name(self.dataset) / safe_name(self.pairing)

    @property
    def storage_path(self) -> Path:
        return self.folder / f"{safe_name(self.label)}.db"

    @property
    def best_path(self) -> Path:
        return self.folder / f"{safe_name(self.label)}.json"

    def space(self) -> dict[str, Distribution]:
        return {**STRATEGIES.get(self.cell.strategy).tuning_space(), **SHARED_TRAINING_SPACE}

    def identity(self, settings: TuningSettings) -> dict[str, Any]:
        """What a stored study must match to be resumed: space, code, fixed settings, the tuning
        settings (the budget's unit, seeds, sampler, pruner, defaults first), and the data by
        content (`data_path` is recorded but, as for runs, not compared), and the trajectories an
        ensemble strategy learns from, by content (`knowledge`). The budget's size is left out, so a
        larger budget resumes a study where it stopped; a study made before epoch budgets lacks the
        unit and differs."""
        cell = self.cell
        return json.loads(json.dumps({
            "space": {k: v.describe(self.n_items) for k, v in sorted(self.space().items())},
            "strategy_code": strategy_code(cell.strategy),
            "fixed_hparams": dict(cell.hparams),
            # trials made before 2026-12-08 trained without the fixed hyperparameters (DE with its
            # default 30 experts where the suite fixes 5): such a study is another study
            **({FIXED_IN_TRIALS: True} if cell.hparams else {}),
            "train": cell.train.as_dict(),
            "teacher_train": cell.teacher_settings.as_dict(),
            "teacher_seed": cell.teacher_seed,
            "split_seed": cell.split_seed,
            "data_path": recorded_data_path(cell.dataset, cell.data_path),
            **({"data_fingerprint": self.data_fingerprint} if self.data_fingerprint else {}),
            "threads": cell.threads,
            **({"trajectories": list(self.knowledge)} if self.knowledge else {}),
            **{k: v for k, v in settings.as_dict().items() if k != "budget"},
        }, default=str))

    def defaults(self) -> dict[str, Any]:
        """Trial 0: the strategy's published defaults (with the suite's fixed hyperparameters) and
        the cell's training settings, for every parameter of the space."""
        resolved = STRATEGIES.get(self.cell.strategy).resolve_hparams(dict(self.cell.hparams))
        values = {**resolved, "learning_rate": self.cell.train.learning_rate,
                  "weight_decay": self.cell.train.weight_decay}
        return {name: values[name] for name in self.space()}


def source_cell(cell: Cell) -> Cell:
    """The cell of the study that tunes `cell` (`tuned_through`), with the fixed hyperparameters of
    that strategy's part."""
    source, prefix = tuned_through(cell.strategy)
    if source == cell.strategy:
        return cell
    fixed = tuple((key[len(prefix):], value) for key, value in cell.hparams if prefix and key.startswith(prefix))
    return replace(cell, strategy=source, hparams=fixed)


def study_cells(cells: list[Cell]) -> list[Cell]:
    """One cell per (dataset, pairing, strategy) of a suite's cells (the first seed's), each strategy
    tuned through the study `tuned_through` names; a strategy that does not train (`trains` False:
    svd, prune, quant) has nothing to tune and gets no study."""
    seen: dict[tuple, Cell] = {}
    for cell in cells:
        if cell.strategy != TEACHER and cell.variant != TUNED and STRATEGIES.get(cell.strategy).trains:
            cell = source_cell(cell)
            seen.setdefault((cell.dataset, cell.protocol, cell.pairing, cell.strategy), cell)
    return list(seen.values())


def _sampler(settings: TuningSettings, study_name: str, trial_number: int):
    import optuna

    digest = hashlib.sha256(f"{settings.sampler_seed}/{study_name}/{trial_number}".encode()).digest()
    return optuna.samplers.TPESampler(seed=int.from_bytes(digest[:4], "little"),
                                      n_startup_trials=settings.startup_trials)


def _counted(trial) -> bool:
    """A trial spends budget once it finished: complete, pruned, or failed other than by interruption."""
    import optuna

    states = optuna.trial.TrialState
    if trial.state in (states.COMPLETE, states.PRUNED):
        return True
    return trial.state == states.FAIL and not trial.user_attrs.get(INTERRUPTED)


def _epochs(trial) -> int:
    """The epochs a counted trial spent (at least 1, so that trials failing at once still end a study)."""
    return max(int(trial.user_attrs.get("epochs", 0)), 1)


def spent(trials, settings: TuningSettings) -> int:
    """The budget the counted trials spent, in the settings' unit."""
    counted = [t for t in trials if _counted(t)]
    return len(counted) if settings.trials is not None else sum(map(_epochs, counted))


def open_study(study: Study, settings: TuningSettings, force: bool = False):
    """The Optuna study of `study` from its storage, created if new; a running trial left by a killed
    driver is marked failed (interrupted) and its parameters are enqueued, to be asked again first
    and go on from the progress it kept (`tuning.resume`). A storage refused (damaged, another study's, or made with
    other settings) stops with one line, or with `force` is started again; a current study, finished
    or not, is always kept and resumed."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    identity = study.identity(settings)
    try:
        optuna_study = _load_or_create(study, identity)
    except KdbenchError:
        if not force:
            raise
        study.storage_path.unlink(missing_ok=True)
        optuna_study = _load_or_create(study, identity)
    for trial in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        optuna_study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        optuna_study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if HPARAMS in trial.user_attrs:  # asked again first, to continue where it stopped (`tuning.resume`)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna warns of a kept default outside its range
                optuna_study.enqueue_trial(trial.params, user_attrs={
                    **{k: v for k, v in trial.user_attrs.items() if k in (HPARAMS, DEFAULTS)}, RESUMES: trial.number})
    return optuna_study


def _load_or_create(study: Study, identity: dict[str, Any]):
    """The study in its storage (created, with `identity`, if new), or KdbenchError if the storage is
    damaged, holds another study, or holds this one made with other settings."""
    import optuna

    if study.storage_path.exists():  # one study per file, never a second one added beside another
        check_storage(study.storage_path, study.name)
    study.folder.mkdir(parents=True, exist_ok=True)
    try:
        optuna_study = optuna.create_study(storage=f"sqlite:///{study.storage_path}", study_name=study.name,
                                           direction="maximize", load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy / sqlite errors of a damaged file
        raise DamagedFile(study.storage_path, f"not a readable Optuna study ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120]})", "pass --force to start it again") from None
    stored = optuna_study.user_attrs.get("identity")
    if stored is None:
        optuna_study.set_user_attr("identity", identity)
    elif changed := _identity_changes(stored, identity):
        raise KdbenchError(f"study '{study.name}' in {study.storage_path} was made with other settings "
                           f"({', '.join(changed)}); pass --force to start it again")
    return optuna_study


def _identity_changes(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields in which a stored study's identity differs from `current`, the data's location
    aside; a study stored before fingerprints were recorded is taken at its word about the data."""
    if not isinstance(stored, dict):
        return [f"identity (stored as {type(stored).__name__}, not a mapping)"]
    if "data_fingerprint" not in stored:
        current = {k: v for k, v in current.items() if k != "data_fingerprint"}
    return identity_differences(stored, current)


def check_storages(cells: list[Cell], results_dir: str | Path, force: bool = False) -> None:
    """Refuse, before any study is opened or created, a storage that is not an SQLite file (a
    truncated or foreign file), holds another study, or a non-mapping identity; --force starts such
    studies again."""
    check_study_storages([Study(cell, 0, Path(results_dir)) for cell in study_cells(cells)], force)


def check_study_storages(studies: list[Study], force: bool = False) -> None:
    """`check_storage` of each study's existing SQLite file (none with --force: it starts them again)."""
    for study in studies:
        if not force and study.storage_path.exists():
            check_storage(study.storage_path, study.name)


def check_tuning_seeds(settings: TuningSettings, cells: list[Cell]) -> None:
    """Tuning seeds must be disjoint from the evaluation seeds: tuning never sees a tested run."""
    overlap = sorted(set(settings.seeds) & {cell.seed for cell in cells})
    if overlap:
        raise KdbenchError(f"tuning seeds {overlap} are also evaluation seeds: choose tuning seeds the "
                           f"suite's runs do not use")


def tune(runner: Runner, cells: list[Cell], settings: TuningSettings, force: bool = False,
         on_trial: Callable[[Study, TrialOutcome], None] | None = None,
         on_open: Callable[[Study, int], None] | None = None) -> list[dict[str, Any]]:
    """Run every study of `cells` to its budget; returns the studies' summaries (also written as JSON).
    on_trial(study, outcome) follows each trial; on_open(study, spent) each study's budget already
    spent when it is opened (a resumed study's)."""
    check_tuning_seeds(settings, cells)
    cells = study_cells(cells)
    for cell in cells:
        STRATEGIES.get(cell.strategy)
    check_storages(cells, runner.results_dir, force)
    studies = [Study(cell, runner.n_items(cell), Path(runner.results_dir), runner.fingerprint(cell)) for cell in cells]
    return run_studies(runner, studies, settings, force, on_trial, on_open)


def run_studies(runner: Runner, studies: list[Study], settings: TuningSettings, force: bool = False,
                on_trial: Callable[[Study, TrialOutcome], None] | None = None,
                on_open: Callable[[Study, int], None] | None = None) -> list[dict[str, Any]]:
    """Open `studies` and run them side by side, one trial of each at a time, until every budget is
    spent; returns their summaries (also written as JSON)."""
    held: dict[str, Claim] = {}
    try:
        for study in sorted(studies, key=lambda study: study.name):
            held[study.name] = claim_study(study, runner.log)
        # a study whose budget is spent is let go at once: a finished teacher study that several
        # suites' students share must not keep another tuner waiting while this one tunes the rest
        return _tune_claimed(runner, studies, settings, force, on_trial, on_open,
                             spent_out=lambda study: held.pop(study.name).release())
    finally:
        for claim in held.values():
            claim.release()


def claim_study(study: Study, log: Callable[[str], None]) -> Claim:
    """The study's claim (`run.claims`), waiting while another process tunes it: one process at a
    time opens a study, so its identity is set once and checked by the next, and no live process's
    running trial is taken for an interrupted one. Claimed in name order, so two tuners never wait
    for each other in a circle."""
    path = study.folder / f".{safe_name(study.cell.strategy)}{claims.SUFFIX}"
    while (claim := try_claim(path)) is None:
        wait_until_free(path, lambda owner: log(f"waiting for study {study.name}: {owner} is tuning it"))
    return claim


def _tune_claimed(runner: Runner, studies: list[Study], settings: TuningSettings, force: bool,
                  on_trial: Callable[[Study, TrialOutcome], None] | None,
                  on_open: Callable[[Study, int], None] | None,
                  spent_out: Callable[[Study], None] | None = None) -> list[dict[str, Any]]:
    """Run the claimed `studies` (`run_studies`); `spent_out(study)` once a study's budget is spent
    and none of its trials runs here (its summary is written, it is asked no more)."""
    opened: dict[str, Any] = {}

    def open_all(batch: list[Study]) -> None:
        for study in batch:
            opened[study.name] = open_study(study, settings, force)
            for trial in opened[study.name].get_trials(deepcopy=False):
                if _counted(trial):  # recorded: what a kill right after its record left behind is not needed
                    discard_trial(runner.cache_dir, trial.user_attrs.get(PROGRESS))
            if on_open:
                on_open(study, spent(opened[study.name].get_trials(deepcopy=False), settings))

    # A study is opened (and refused, if made with other settings) before any teacher trains, except
    # an ensemble strategy's: its identity holds the trajectories the teachers bring.
    ensembles = [study for study in studies if learns_from_trajectories(study.cell)]
    open_all([study for study in studies if study not in ensembles])
    # A study whose strategy needs no teacher (scratch; a teacher's own study, which trains the
    # teacher's backbone as scratch) gets none: before its study a teacher would be trained with the
    # untuned settings that no cell uses once the study has chosen.
    taught = [study for study in studies if needs_teacher(study.cell)]
    artifacts = runner.teachers([study.cell for study in taught])
    given: dict[str, tuple[TeacherArtifact | None, tuple[TeacherArtifact, ...]]] = {
        study.name: (None, ()) for study in studies}  # study -> (teacher, ensemble) its trials get
    for study in taught:
        teacher, ensemble = artifacts[runner.teacher_key(study.cell)], runner.ensemble(study.cell, artifacts)
        for artifact in (teacher, ensemble):
            if isinstance(artifact, Exception):
                raise KdbenchError(f"teacher of {study.name} failed to train: {artifact}")
        study.knowledge = tuple(member.trajectory_digest for member in ensemble)
        given[study.name] = (teacher, ensemble)
    open_all(ensembles)
    from optuna.trial import TrialState

    waiting = list(studies)  # studies with budget left and no trial running, in turn
    summaries: dict[str, dict[str, Any]] = {}  # of the studies whose budget is spent
    pending: list[tuple[Study, Any, TrialTask]] = []

    def next_trials():
        """A trial of the next study in turn each time a worker is free; ends when every study with
        budget left has its trial running (the next round starts when one returns)."""
        while waiting:
            study = waiting.pop(0)
            asked = _ask(study, opened[study.name], settings)
            if asked is None:  # its budget is spent: its summary now, before another process may open it
                summaries[study.name] = write_best(study, opened[study.name], settings)
                if spent_out:
                    spent_out(study)
                continue
            trial, params, left = asked
            teacher, ensemble = given[study.name]
            base = CellTask(replace(study.cell, seed=settings.seeds[0]), runner.device, str(runner.cache_dir),
                            runner.plugins, teacher, ensemble=ensemble)
            finished = tuple(t for t in opened[study.name].get_trials(deepcopy=False)
                             if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
            pruner = settings.pruner.not_before(study.cell.train.min_epochs)
            prunable = not trial.user_attrs.get(DEFAULTS)
            key = trial_resume_key(study, settings, params, finished, left, prunable)
            trial.set_user_attr(PROGRESS, key)
            pending.append((study, trial, TrialTask(base, params, settings.seeds, pruner, finished, left,
                                                    prunable=prunable, resume_key=key)))
            yield pending[-1][2]

    while waiting:  # each pass: trials as workers free up, a study back in turn when its trial returns
        pending.clear()
        for index, outcome in runner.executor.map_unordered(run_trial, next_trials()):
            study, trial, task = pending[index]
            if isinstance(outcome, Exception):
                outcome = TrialOutcome(None, [], error=f"{type(outcome).__name__}: {outcome}")
            _tell(opened[study.name], trial, outcome, task.params)
            discard_trial(runner.cache_dir, task.resume_key)
            write_best(study, opened[study.name], settings)
            waiting.append(study)
            if on_trial:
                on_trial(study, outcome)
    return [summaries[study.name] for study in studies]


def _ask(study: Study, optuna_study, settings: TuningSettings):
    """(trial, parameters it trains with, epochs it may spend or None) of the study's next trial, or
    None once its budget is spent. The published defaults are enqueued first, until a trial holding
    them has spent budget (an interrupted one is asked again)."""
    import warnings

    import optuna

    trials = optuna_study.get_trials(deepcopy=False)
    used = spent(trials, settings)
    if used >= settings.budget:
        return None
    waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
    if not waiting and not any(t.user_attrs.get(DEFAULTS) and _counted(t) for t in trials):
        space = study.space()
        defaults = study.defaults()
        optuna_study.enqueue_trial({k: recordable(space[k], v, study.n_items) for k, v in defaults.items()},
                                   user_attrs={DEFAULTS: True, HPARAMS: defaults})
    optuna_study.sampler = _sampler(settings, study.name, _draws(trials))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns of an enqueued default outside its range
        trial = optuna_study.ask()
        params = {name: dist.suggest(trial, name, study.n_items) for name, dist in study.space().items()}
    params = trial.user_attrs.get(HPARAMS, params)
    trial.set_user_attr(HPARAMS, params)  # known before it ends: an interrupted trial is asked again with it
    return trial, params, None if settings.trials is not None else settings.budget - used


def _draws(trials) -> int:
    """The sampler's seed index of the next trial: the trials asked before it, the interrupted ones and
    those waiting aside, so that a study whose trial was interrupted and taken up again draws its later
    trials as the uninterrupted study would."""
    import optuna

    return sum(not t.user_attrs.get(INTERRUPTED) and t.state != optuna.trial.TrialState.WAITING for t in trials)


def trial_resume_key(study: Study, settings: TuningSettings, params: dict[str, Any], finished: tuple,
                     allowance: int | None, prunable: bool) -> str:
    """The key of a trial's kept progress (`tuning.resume`): what determines what the trial computes,
    so that only the same trial, asked again after an interruption, takes a kept state over."""
    return run_key([study.name, study.identity(settings), params, [t.number for t in finished], allowance,
                    prunable])


def _tell(optuna_study, trial, outcome: TrialOutcome, params: dict[str, Any]) -> None:
    import optuna

    for epoch, value in outcome.curve:
        trial.report(value, epoch)
    for key, value in outcome.rungs.items():  # successive halving's record, for later trials to compete with
        optuna_study._storage.set_trial_system_attr(trial._trial_id, key, value)
    trial.set_user_attr(HPARAMS, params)
    trial.set_user_attr("seconds", outcome.seconds)
    trial.set_user_attr("epochs", outcome.epochs)
    if outcome.out_of_budget:
        trial.set_user_attr("out_of_budget", True)
    if outcome.error:
        trial.set_user_attr("error", outcome.error)
        optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)
    elif outcome.pruned:
        optuna_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        optuna_study.tell(trial, outcome.value)


def write_best(study: Study, optuna_study, settings: TuningSettings) -> dict[str, Any]:
    """Write `<strategy>.json`: the budget, what was spent, and the best trial's hyperparameters."""
    import optuna

    trials = optuna_study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    complete = [t for t in trials if t.state == states.COMPLETE]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    strategy_params, training = split_params(best.user_attrs.get(HPARAMS, best.params)) if best else ({}, {})
    defaults = next((t for t in trials if t.user_attrs.get(DEFAULTS) and _counted(t)), None)
    summary = {
        "dataset": study.dataset,
        "pairing": study.pairing,
        "strategy": study.label,
        "study": study.name,
        "storage": study.storage_path.name,
        "budget": settings.budget,
        "budget_unit": settings.unit,
        "spent": spent(trials, settings),
        "epochs_spent": sum(_epochs(t) for t in trials if _counted(t)),
        "trials_counted": sum(map(_counted, trials)),
        "trials_complete": len(complete),
        "trials_pruned": sum(t.state == states.PRUNED for t in trials),
        "trials_failed": sum(t.state == states.FAIL and not t.user_attrs.get(INTERRUPTED) for t in trials),
        "trials_interrupted": sum(bool(t.user_attrs.get(INTERRUPTED)) for t in trials),
        "finished": spent(trials, settings) >= settings.budget and best is not None,
        "compute_seconds": sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials),
        "best_trial": best.number if best else None,
        "best_valid_ndcg@10": best.value if best else None,
        "defaults_trial": defaults.number if defaults else None,
        "defaults_valid_ndcg@10": defaults.value if defaults and defaults.state == states.COMPLETE else None,
        "best_hparams": study.cell.strategy_hparams(strategy_params),
        "best_training": training,
        "identity": study.identity(settings),
        "tuning": settings.as_dict(),
    }
    atomic.write_json(study.best_path, summary)
    return summary

