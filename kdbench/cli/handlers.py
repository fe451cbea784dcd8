"""One handler per command: parsed flags -> the use case's plain arguments (`kdbench.commands`), and
its result -> the lines the command prints and its exit code (0, or 1 when a cell failed or a
reproduced run differs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from kdbench.commands.cost import measure_costs
from kdbench.commands.execution import Execution, failed_records, progress_note
from kdbench.commands.export_teacher import export_teacher
from kdbench.commands.listing import describe
from kdbench.commands.report import rebuild_reports
from kdbench.commands.reproduce import reproduce_suite
from kdbench.commands.run import SINGLE_DATASET, RunOutcome, leaderboard_note, run_single, run_suite
from kdbench.commands.summary import counts_line, top_rows
from kdbench.commands.sweep import run_sweep
from kdbench.commands.data_share import run_data_share
from kdbench.commands.tune import tune_suite
from kdbench.errors import KdbenchError
from kdbench.data.importer import import_dataset
from kdbench.run.inference_cost import SYNTHETIC_USERS
from kdbench.evaluation.metrics import PRIMARY_METRIC
from kdbench.store.paths import check_folder
from kdbench.report.tuning_summary import BEST_VALUE
from kdbench.cli.data import run_data_command
from kdbench.run.record import cpu_model
from kdbench.run.reproduce import CROSS_CPU_TOLERANCE, reproduce
from kdbench.training.teacher_file import is_file_teacher
from kdbench.training.loop import TrainSettings
from kdbench.run.locations import drop_locations
from kdbench.commands.verify import run_roots, verify


def _names(values: list[str] | None) -> list[str] | None:
    """A repeatable, comma-separated flag's names; None when the flag was not given."""
    if not values:
        return None
    return [name.strip() for item in values for name in item.split(",") if name.strip()]


def _plugins(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(str(Path(p).resolve()) for p in args.plugin)


def _execution(args: argparse.Namespace) -> Execution:
    """The location and executor flags of a command that trains."""
    if args.address is not None and args.executor != "ray":
        raise KdbenchError(f"--address {args.address} is a Ray cluster's: it needs --executor ray "
                           f"(got --executor {args.executor})")
    return Execution(device=args.device, cache_dir=args.cache_dir, force=args.force,
                     replace_stale=getattr(args, "replace_stale", False), workers=args.workers,
                     executor=args.executor, address=args.address, plugins=_plugins(args),
                     heal_cache=not getattr(args, "strict_cache", False))


def _command(args: argparse.Namespace) -> str:
    return "python -m kdbench " + " ".join(args.argv)


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise KdbenchError(f"{what} must be comma-separated integers, got '{text}'") from None
    if not values or min(values) < 0:
        raise KdbenchError(f"{what} must be non-negative integers, got '{text}'")
    return values


def _train_settings(args: argparse.Namespace, prefix: str = "") -> TrainSettings:
    """The student's (or, with prefix 'teacher_', the teacher's) settings of a single run: each
    model has its own flags, so `--epochs 2` never shortens (and caches) a 2-epoch teacher."""
    given = {"max_epochs": getattr(args, f"{prefix}epochs"), "learning_rate": getattr(args, f"{prefix}lr"),
             "batch_size": getattr(args, f"{prefix}batch_size"), "patience": getattr(args, f"{prefix}patience"),
             "eval_every": getattr(args, f"{prefix}eval_every", None)}
    return TrainSettings(**{k: v for k, v in given.items() if v is not None})


def _failed(records: list[dict]) -> int:
    """1 (and the count on stderr) when a cell failed, else 0."""
    failed = failed_records(records)
    if failed:
        print(f"kdbench: {len(failed)} cell(s) failed; see their result files", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if args.all or args.suite or args.quick:
        outcome = run_suite(args.results_dir, _execution(args), args.suite, args.quick, _names(args.strategy),
                            _names(args.protocol), command=_command(args), strict=args.strict,
                            datasets=_names([args.dataset]) if args.dataset else None)
        for path in outcome.outputs:
            print(f"wrote {path}")
        print(counts_line(outcome.runner, len(outcome.cells)))
        for line in top_rows(outcome.outputs):
            print(line)
        return _failed(outcome.records)
    dataset = args.dataset or SINGLE_DATASET
    outcome = run_single(args.results_dir, _execution(args), dataset, args.teacher, args.student,
                         _names(args.strategy), args.seed, args.hp, _train_settings(args),
                         _train_settings(args, "teacher_"), args.data_path, _names(args.protocol))
    for record in outcome.records:
        _print_record(record)
    _print_teachers(outcome)
    note = leaderboard_note(dataset, args.teacher, args.student, _train_settings(args),
                            _train_settings(args, "teacher_"))
    if note:
        print(note)
    return _failed(outcome.records)


def _print_record(record: dict) -> None:
    test = record.get("test", {})
    cost = record.get("cost", {})
    if record.get("status") != "ok":
        print(f"{record['label']} seed {record['seed']}: FAILED {record.get('error')}")
        return
    # the teacher row's own metrics are its test; a student from a teacher file has no teacher metrics
    teacher = (record.get("teacher_test") or (test if record.get("strategy") == "teacher" else {})).get(PRIMARY_METRIC)
    print(f"{record['dataset']} {record['pairing']} {record['label']} seed {record['seed']}: "
          f"NDCG@10 {test[PRIMARY_METRIC]:.4f} Recall@10 {test['recall@10']:.4f} "
          + (f"(teacher NDCG@10 {teacher:.4f}) " if teacher is not None else "(teacher from a file) ")
          + f"params {cost.get('params')} {cost.get('throughput_users_per_s', 0):.0f} users/s "
          f"{record['training']['seconds_per_epoch']:.2f} s/epoch, best epoch {record['training']['best_epoch']}")


def _print_teachers(outcome: RunOutcome) -> None:
    """Each teacher's settings and where it came from (cache key; trained now or loaded)."""
    runner, seen = outcome.runner, set()
    for cell in outcome.cells:
        settings = cell.teacher_settings
        described = (f"teacher {cell.teacher} (seed {cell.teacher_seed}) on {cell.dataset}: lr {settings.learning_rate}, "
                     f"batch {settings.batch_size}, max epochs {settings.max_epochs}, patience {settings.patience}")
        if is_file_teacher(cell.teacher):
            described = f"teacher {cell.teacher} on {cell.dataset}: a teacher file (top-{cell.teacher.k}, sha256 {cell.teacher.sha256})"
        if not runner.executed:
            line = f"{described}; not needed: every cell had a finished result"
        else:
            key = runner.teacher_key(cell)
            line = f"{described}; cache key {key}: {runner.teacher_sources.get(key, 'not needed')}"
        if line not in seen:
            seen.add(line)
            print(line)


def tune(args: argparse.Namespace) -> int:
    summaries, written = tune_suite(args.results_dir, _execution(args), args.suite, args.quick, _names(args.strategy),
                                    _names(args.protocol), args.pairing, args.trials, command=_command(args),
                                    budget_epochs=args.budget_epochs, datasets=_names(args.dataset))
    for path in written:
        print(f"wrote {path}")
    for summary in summaries:
        best = summary[BEST_VALUE]
        print(f"{summary['pairing']} {summary['strategy']}: best valid NDCG@10 "
              f"{best if best is None else round(best, 4)} "
              f"({summary['spent']}/{summary['budget']} {summary['budget_unit']}, {summary['trials_counted']} trials)")
    return 0


def cost(args: argparse.Namespace) -> int:
    catalogues = _int_list(args.catalogues, "--catalogues") if args.catalogues.strip() else []
    if catalogues and min(catalogues) < SYNTHETIC_USERS:
        raise KdbenchError(f"--catalogues must be at least {SYNTHETIC_USERS:,} items "
                           f"(one per synthetic user), got '{args.catalogues}'")
    measure_costs(args.results_dir, args.cache_dir, args.suite, args.quick, catalogues=catalogues,
                  rounds=args.rounds, warmup=args.warmup, threads=args.threads, min_seconds=args.min_seconds,
                  on_written=lambda path: print(f"wrote {path}"))
    print(f"`python -m kdbench report{' --quick' if args.quick else ''}` puts these figures in the leaderboard")
    return 0


def listing(args: argparse.Namespace) -> int:
    for block in describe(args.results_dir, args.all_datasets):
        print(block)
    return 0


def report(args: argparse.Namespace) -> int:
    for path in rebuild_reports(args.results_dir, args.quick, args.changes_from):
        print(f"wrote {path}")
    return 0


def sweep(args: argparse.Namespace) -> int:
    dims = _int_list(args.dims, "--dims")
    if min(dims) < 1:
        raise KdbenchError(f"--dims must be positive integers, got '{args.dims}'")
    seeds = _int_list(args.seeds, "--seeds")
    settings = TrainSettings(learning_rate=args.lr, batch_size=args.batch_size, patience=args.patience,
                             max_epochs=args.epochs)
    path = run_sweep(args.results_dir, _execution(args), args.dataset, args.model, dims, seeds, settings,
                     args.data_path)
    print(path.read_text())
    print(f"wrote {path}")
    return 0


def sweep_data(args: argparse.Namespace) -> int:
    try:
        shares = [float(v) for v in args.shares.split(",") if v.strip()]
    except ValueError:
        raise KdbenchError(f"--shares must be comma-separated numbers, got '{args.shares}'") from None
    paths, records = run_data_share(args.results_dir, _execution(args), args.dataset, args.teacher, args.student,
                                    shares, _int_list(args.seeds, "--seeds"), _names(args.strategy), args.variant,
                                    args.subsample_seed, args.suite, args.epochs, args.patience, args.data_path,
                                    _command(args))
    print(paths[0].read_text())
    for path in paths:
        print(f"wrote {path}")
    return _failed(records)


def reproduce_command(args: argparse.Namespace) -> int:
    """RUN.json: one stored run again, compared; --suite FILE: a published table's suite."""
    check_folder(args.cache_dir, "--cache-dir")
    if (args.suite is None) == (args.run_file is None):
        raise KdbenchError("reproduce needs either RUN.json (one stored run) or --suite FILE (a published table)")
    if args.suite is not None:
        written, records = reproduce_suite(args.results_dir, _execution(args), args.suite, _names(args.protocol),
                                           args.data_path)
        for path in written:
            print(f"wrote {path}")
        return _failed(records)
    result = reproduce(args.run_file, args.cache_dir, retrain_teacher=args.retrain_teacher,
                       heal_cache=not args.strict_cache, plugins=_plugins(args), log=progress_note,
                       data_path=args.data_path)
    cell = result.cell
    print(f"reproduced {args.run_file}: {cell.dataset} {cell.pairing} {cell.label} seed {cell.seed}")
    if result.stale:
        print(f"note: the current code gives this cell another identity ({', '.join(result.stale)}): "
              f"the stored run was made by other code or settings, so differences are expected")
    settings = cell.teacher_settings
    print(f"teacher {cell.teacher} (seed {cell.teacher_seed}): lr {settings.learning_rate}, batch {settings.batch_size}, "
          f"max epochs {settings.max_epochs}, patience {settings.patience}; {result.teacher_source}")
    if result.identical:
        test = result.reproduced.get("test") or {}
        shown = ", ".join(f"{k} {v:.6f}" for k, v in sorted(test.items())) or result.reproduced.get("status")
        print(f"identical: {shown}")
        return 0
    if result.equivalent:
        print(f"within tolerance: made on {result.stored_cpu}, reproduced on {cpu_model()} (other float "
              f"kernels): largest relative difference of a test metric {result.largest_test_difference:.1e} "
              f"<= {CROSS_CPU_TOLERANCE:g}; not bit-identical in {len(result.differences)} value(s):")
        for line in result.differences:
            print(f"  {line}")
        return 0
    print(f"DIFFERENT in {len(result.differences)} value(s):")
    for line in result.differences:
        print(f"  {line}")
    return 1


def data(args: argparse.Namespace) -> int:
    """`data import` here; the catalogue's actions (`list`, `fetch`) in `kdbench.cli.data`."""
    return data_import(args) if args.data_command == "import" else run_data_command(args)


def data_import(args: argparse.Namespace) -> int:
    summary = import_dataset(args.format, args.file, args.name, args.out, args.min_user_interactions)
    print(f"wrote {summary.path}: {summary.users:,} users, {summary.items:,} items, "
          f"{summary.interactions:,} interactions ({summary.dropped_users:,} users with fewer than "
          f"{args.min_user_interactions} items dropped); use it with --dataset {args.name} --data-path {args.out}")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    root = Path(args.results_dir)
    if not root.is_dir():
        raise KdbenchError(f"--results-dir '{root}' {'is not a folder' if root.exists() else 'does not exist'}")
    if getattr(args, "drop_locations", False):
        rewritten = drop_locations(run_roots(root))
        print(f"dropped the absolute data folder of {len(rewritten)} run record(s) (identities unchanged)")
    found = verify(root)
    for line in found.notes:
        print(f"note: {line}")
    for line in _grouped(found.stale):
        print(f"{'error' if args.strict else 'stale'}: {line}")
    for line in _grouped(found.locations):
        print(f"{'error' if args.strict else 'warning'}: {line}")
    for line in found.errors:
        print(f"error: {line}")
    failed = found.errors + (found.stale + found.locations if args.strict else [])
    print(f"verify {root}: {found.runs} run file(s) parse, {len(found.stale)} stale, "
          f"{len(found.errors)} error(s){'' if failed else '; leaderboards match report'}")
    return 1 if failed else 0


def _grouped(stale: list[str]) -> list[str]:
    """Stale runs, one line per reason (how many, and the first file), not one per file."""
    by_reason: dict[str, list[str]] = {}
    for line in stale:
        path, _, reason = line.partition(": ")
        by_reason.setdefault(reason, []).append(path)
    return [f"{paths[0]}: {reason}" if len(paths) == 1 else f"{len(paths)} runs, e.g. {paths[0]}: {reason}"
            for reason, paths in by_reason.items()]


# The dispatch table: a command's name (as the parser declares it) -> its handler.
def export_teacher_command(args: argparse.Namespace) -> int:
    execution = Execution(device=args.device, cache_dir=args.cache_dir, plugins=_plugins(args),
                          heal_cache=not args.strict_cache)
    folder = export_teacher(args.output, execution, args.dataset, args.teacher, args.k, not args.no_embeddings,
                            _train_settings(args, "teacher_"), args.data_path, args.protocol, args.teacher_seed)
    print(f"wrote teacher file {folder} (top-{args.k} per row); distil from it with --teacher file:{folder}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run,
    "tune": tune,
    "cost": cost,
    "list": listing,
    "sweep": sweep,
    "sweep-data": sweep_data,
    "report": report,
    "reproduce": reproduce_command,
    "verify": verify_command,
    "data": data,
    "export-teacher": export_teacher_command,
}
