"""Command line: `python -m kdbench run | tune | cost | list | report | sweep | reproduce | verify | data import`.

A mistake a user can make ends in one line on stderr naming the problem (and the valid choices),
exit code 2, no traceback, nothing written to results/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

from kdbench.errors import KdbenchError
from kdbench.paths import check_folder

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_cache_flag(parser) -> None:
    parser.add_argument("--cache-dir", default=os.environ.get("KDBENCH_CACHE", ".kdbench_cache"),
                        help="teacher cache (default: .kdbench_cache or $KDBENCH_CACHE)")


def _add_location_flags(parser: argparse.ArgumentParser, force_help: str) -> None:
    where = parser.add_argument_group("where")
    where.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device")
    where.add_argument("--results-dir", default="results", help="where results go (default: results)")
    _add_cache_flag(where)
    where.add_argument("--force", action="store_true", help=force_help)


def _add_executor_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parallel execution")
    group.add_argument("--workers", type=_positive_int,
                       help="cells run side by side in this many worker processes (default: the number of "
                            "cores; 1 runs in this process). Each cell uses one torch thread either way, so "
                            "results do not depend on this")
    group.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local worker processes (default) or Ray tasks")
    group.add_argument("--address", metavar="auto|HOST:PORT",
                       help="with --executor ray: the running cluster to join (default: a private local Ray instance)")


def _executor(args, n_tasks: int):
    """The executor the flags name; by default one local worker per core, never more than tasks."""
    from kdbench.executors import default_workers, make_executor

    workers = args.workers or max(1, min(default_workers(), n_tasks))
    return make_executor(args.executor, workers, args.address, args.device)


def _add_protocol_flag(parser, what: str, default: str) -> None:
    from kdbench.data import PROTOCOLS

    parser.add_argument("--protocol", action="append", metavar="NAME",
                        help=f"evaluation protocol preset ({', '.join(f'{p.name}: {p.summary}' for p in PROTOCOLS.values())}); "
                             f"{what} (default: {default}; repeatable or comma-separated)")


def _protocols(args) -> list[str] | None:
    if not getattr(args, "protocol", None):
        return None
    from kdbench.data import get_protocol

    names = [name.strip() for item in args.protocol for name in item.split(",") if name.strip()]
    for name in names:
        get_protocol(name)
    return list(dict.fromkeys(names))


def _hparam(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kdbench",
        description="Benchmark knowledge-distillation strategies for recommenders on RecBole.",
    )
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="import a Python file that registers extra strategies (repeatable)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="train teacher (cached) and students; write results",
                              description="Train (or load the cached) teacher, train the student(s) "
                              "with the given strategies and seeds, and write one JSON result per run "
                              "under RESULTS_DIR/runs/. With --all or --suite, run a whole suite and "
                              "write the leaderboard.")
    grid = run.add_argument_group("suite")
    grid.add_argument("--all", action="store_true", help="run the default suite (kdbench/suites/default.yaml)")
    grid.add_argument("--suite", metavar="FILE", help="run the suite in this YAML file")
    grid.add_argument("--quick", action="store_true",
                      help="the suite's reduced version (a first look; its leaderboard is written beside the full one)")
    single = run.add_argument_group("single run")
    single.add_argument("--dataset", default="ml-100k", help="RecBole dataset name (default: ml-100k, bundled)")
    single.add_argument("--data-path", metavar="DIR", help="folder with DATASET.inter in RecBole atomic format")
    single.add_argument("--teacher", default="BPR:200", help="teacher MODEL:DIM (default: BPR:200)")
    single.add_argument("--student", default="BPR:20", help="student MODEL:DIM (default: BPR:20)")
    single.add_argument("--strategy", action="append", metavar="NAME",
                        help="strategy (repeatable or comma-separated; default: scratch; 'all' for every one)")
    single.add_argument("--seed", action="append", type=int, metavar="N", help="model seed (repeatable; default 0)")
    single.add_argument("--hp", action="append", type=_hparam, default=[], metavar="KEY=VALUE",
                        help="override a strategy hyperparameter (repeatable)")
    _add_protocol_flag(single, "with --all/--suite it replaces the suite's `protocol:`",
                       "the suite's, else random")
    training = run.add_argument_group("student training (a single run; the teacher has its own flags)")
    training.add_argument("--epochs", type=_positive_int, help="maximum epochs (default 300; early stopping decides)")
    training.add_argument("--lr", type=_positive_float, help="learning rate (default 0.001)")
    training.add_argument("--batch-size", type=_positive_int, help="training batch size (default 2048)")
    training.add_argument("--patience", type=_positive_int, help="validations without improvement before stopping (default 10)")
    teacher = run.add_argument_group("teacher training (a single run; cached by these settings)")
    teacher.add_argument("--teacher-epochs", type=_positive_int, help="teacher's maximum epochs (default 300)")
    teacher.add_argument("--teacher-lr", type=_positive_float, help="teacher's learning rate (default 0.001)")
    teacher.add_argument("--teacher-batch-size", type=_positive_int, help="teacher's batch size (default 2048)")
    teacher.add_argument("--teacher-patience", type=_positive_int, help="teacher's patience (default 10)")
    _add_location_flags(run, "redo cells that already have a result")
    _add_strict_cache_flag(run)
    _add_executor_flags(run)

    tune = commands.add_parser("tune", help="give every strategy the same Optuna budget on validation data",
                               description="Tune every strategy of a suite (scratch included) with the same "
                               "number of Optuna trials (TPE, median pruning) on validation NDCG@10; the test "
                               "split is never scored. Studies go to RESULTS_DIR/tuning/ (SQLite) and resume "
                               "where they stopped; `run` then adds a tuned row per strategy.")
    _add_suite_flags(tune, "tune the default suite (the default)",
                     "tune the suite in this YAML file (its `tuning:` block)", "the suite's reduced version")
    tune.add_argument("--strategy", action="append", metavar="NAME", help="only these strategies (repeatable)")
    tune.add_argument("--trials", type=_positive_int, help="trials per study (default: the suite's tuning block)")
    tune.add_argument("--pairing", action="append", metavar="TEACHER->STUDENT",
                      help="only this pairing of the suite, e.g. 'BPR:64->BPR:5' (repeatable)")
    _add_protocol_flag(tune, "replaces the suite's `protocol:`", "the suite's")
    _add_location_flags(tune, "start studies made with other settings again")
    _add_strict_cache_flag(tune)
    _add_executor_flags(tune)

    cost = commands.add_parser("cost", help="measure inference cost per model shape (teacher and students)",
                               description="Measure the inference cost of every model shape of a suite once: "
                               "for each dataset and teacher, the teacher and all its students (and the roofline "
                               "U @ I.T + top-K of each size) in one sitting, interleaved, with warm-up and repeats, "
                               "on the dataset's catalogue and on synthetic deployment-size catalogues. Writes "
                               "RESULTS_DIR/cost/DATASET/TEACHER.json; `report` puts it in the leaderboard.")
    _add_suite_flags(cost, "the default suite's shapes (the default)", "the shapes of the suite in this YAML file",
                     "the suite's reduced version (writes under RESULTS_DIR/quick)")
    cost.add_argument("--catalogues", default=",".join(str(n) for n in (100_000, 1_000_000)), metavar="N,N",
                      help="synthetic catalogue sizes in items (default: 100000,1000000; '' for none)")
    cost.add_argument("--rounds", type=_positive_int, default=11,
                      help="timed calls of every target, interleaved (default 11)")
    cost.add_argument("--min-seconds", type=_positive_float, default=3.0,
                      help="where calls are quick, more rounds, to time about this long per catalogue and batch "
                           "size (default 3)")
    cost.add_argument("--warmup", type=_positive_int, default=2, help="untimed calls of every target first (default 2)")
    cost.add_argument("--threads", type=_positive_int, default=1,
                      help="torch intra-op threads (default 1, as every cell trains and is evaluated with)")
    cost.add_argument("--results-dir", default="results", help="where cost/ goes (default: results)")
    _add_cache_flag(cost)

    listing = commands.add_parser("list", help="list datasets, backbones and strategies",
                                  description="List bundled datasets, known backbones and registered strategies.")
    listing.add_argument("--all-datasets", action="store_true", help="also list every downloadable RecBole dataset")
    listing.add_argument("--results-dir", default="results", help="where tuned hyperparameters are read (default: results)")

    sweep = commands.add_parser("sweep", help="NDCG@10 vs embedding size, trained from scratch",
                                description="Train a backbone from scratch at several sizes (the largest is "
                                "the reference) and write results/size_sweep_DATASET_MODEL.md/.csv.")
    sweep.add_argument("--dataset", default="ml-100k")
    sweep.add_argument("--data-path", metavar="DIR")
    sweep.add_argument("--model", default="BPR", help="RecBole model, a sequential one with its options but "
                       "no size, e.g. SASRec:L1H1 (default: BPR)")
    sweep.add_argument("--dims", default="200,64,32,20,10,5", help="comma-separated sizes")
    sweep.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    sweep.add_argument("--lr", type=_positive_float, default=0.001)
    sweep.add_argument("--batch-size", type=_positive_int, default=2048)
    sweep.add_argument("--patience", type=_positive_int, default=10)
    sweep.add_argument("--epochs", type=_positive_int, default=300)
    sweep.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    sweep.add_argument("--results-dir", default="results")
    sweep.add_argument("--force", action="store_true",
                       help="redo sizes and seeds that already have a result (by default they are reused, and a "
                            "stored run made with other training settings stops the sweep before anything trains)")
    _add_cache_flag(sweep)
    _add_executor_flags(sweep)

    report = commands.add_parser("report", help="rebuild leaderboard, CSV, JSON and plot from stored runs",
                                 description="Rebuild results/leaderboard.md, .csv, .json and pareto.png from "
                                 "the run files, and results/reproduction.md and .csv from the runs under "
                                 "results/reproduction/, without training anything.")
    report.add_argument("--results-dir", default="results", help="where the runs are (default: results)")
    report.add_argument("--quick", action="store_true", help="rebuild the quick leaderboard instead")

    reproduce = commands.add_parser("reproduce", help="run a stored run again, or a published table's suite",
                                    description="RUN.json: rebuild the run a result file records from its "
                                    "settings, run it again in a scratch folder (the file is not touched; the "
                                    "teacher comes from the cache or is trained again) and report whether the "
                                    "metrics are identical, with the differences if not. Exit code 1 if they "
                                    "differ. --suite FILE: run a suite with a `paper:` table (e.g. "
                                    "kdbench/suites/reproduce-rcekd-citeulike.yaml) into "
                                    "RESULTS_DIR/reproduction/NAME/ and write RESULTS_DIR/reproduction.md and "
                                    ".csv: the paper's values beside kdbench's.")
    reproduce.add_argument("run_file", nargs="?", metavar="RUN.json",
                           help="a stored run, e.g. results/runs/.../seed0.json")
    reproduce.add_argument("--suite", metavar="FILE", help="a suite with a `paper:` table to reproduce")
    reproduce.add_argument("--data-path", metavar="DIR", help="with --suite: the folder holding the suite's "
                           "dataset (replaces the suite's `data_path:`)")
    reproduce.add_argument("--results-dir", default="results", help="with --suite: where results go (default: results)")
    reproduce.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="with --suite: torch device")
    reproduce.add_argument("--force", action="store_true", help="with --suite: redo cells that already have a result")
    _add_protocol_flag(reproduce, "with --suite: only these of the suite's protocols", "all of them")
    _add_executor_flags(reproduce)
    _add_cache_flag(reproduce)
    reproduce.add_argument("--retrain-teacher", action="store_true",
                           help="train the teacher again (in a scratch cache) instead of loading it")
    _add_strict_cache_flag(reproduce)

    verify = commands.add_parser("verify", help="check stored results: parse, identity, leaderboards",
                                 description="Check that every stored run file parses, that its identity matches "
                                 "the current code (or flag it stale), and that the leaderboard files are what "
                                 "`report` writes now. Exit code 1 on a damaged file or a leaderboard mismatch.")
    verify.add_argument("--results-dir", default="results", help="the results folder (default: results)")
    verify.add_argument("--strict", action="store_true", help="count stale runs as errors too")

    data = commands.add_parser("data", help="import a dataset into RecBole atomic files",
                               description="Dataset tools.")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_import = data_commands.add_parser(
        "import", help="convert a dataset file into RecBole atomic files that keep its order",
        description="Write OUT/NAME/NAME.inter (user_id, item_id and a timestamp column holding each "
                    "pair's position in FILE), usable as `--dataset NAME --data-path OUT`; the `ordered` "
                    "protocols split each user's interactions in the file's order.")
    from kdbench.importer import FORMATS

    data_import.add_argument("file", metavar="FILE", help="the file to import")
    data_import.add_argument("--format", required=True, choices=FORMATS,
                             help="users-dat: one line per user (id = line number from 0): the number of "
                                  "items, then the item ids (CiteULike's users.dat)")
    data_import.add_argument("--name", required=True, help="dataset name (names the folder and the .inter file)")
    data_import.add_argument("--min-user-interactions", type=int, default=0, metavar="N",
                             help="keep users with at least N interactions (default 0: all)")
    data_import.add_argument("--out", default="data", metavar="DIR", help="where NAME/NAME.inter goes (default: data)")
    return parser


def _add_suite_flags(parser: argparse.ArgumentParser, all_help: str, suite_help: str, quick_help: str) -> None:
    """--all / --suite FILE / --quick, as `tune` and `cost` take them (`run` groups them with more)."""
    parser.add_argument("--all", action="store_true", help=all_help)
    parser.add_argument("--suite", metavar="FILE", help=suite_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)


def _add_strict_cache_flag(parser) -> None:
    parser.add_argument("--strict-cache", action="store_true",
                        help="stop on a damaged teacher cache entry instead of moving it aside and "
                             "training the teacher again")


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from kdbench.compat import check_install

        check_install()  # a broken install (no RecBole, a missing import, pandas 3) in one line
        from kdbench.registry import load_entry_point_plugins, load_plugin_file
        import kdbench.strategies  # noqa: F401  (registers the built-in strategies)

        load_entry_point_plugins()
        for plugin in args.plugin:
            load_plugin_file(plugin)
        if args.command == "list":
            return _list(args)
        if args.command == "report":
            return _report(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "tune":
            return _tune(args)
        if args.command == "cost":
            return _cost(args)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "data":
            return _data_import(args)
        return _run(args)
    except KdbenchError as exc:
        print(f"kdbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the file system refused something no check above foresaw
        where = f" {exc.filename}" if exc.filename else ""
        print(f"kdbench: error: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kdbench: interrupted; finished cells are kept, rerun to resume", file=sys.stderr)
        return 130


def _train_settings(args, prefix: str = ""):
    """The student's (or, with prefix 'teacher_', the teacher's) settings of a single run: each
    model has its own flags, so `--epochs 2` never shortens (and caches) a 2-epoch teacher."""
    from kdbench.train import TrainSettings

    given = {"max_epochs": getattr(args, f"{prefix}epochs"), "learning_rate": getattr(args, f"{prefix}lr"),
             "batch_size": getattr(args, f"{prefix}batch_size"), "patience": getattr(args, f"{prefix}patience")}
    return TrainSettings(**{k: v for k, v in given.items() if v is not None})


def _strategies(args) -> list[str] | None:
    if not args.strategy:
        return None
    from kdbench.strategies.base import method_names

    names = [name.strip() for item in args.strategy for name in item.split(",") if name.strip()]
    return method_names() if names == ["all"] else names


def _run(args) -> int:
    from kdbench.backbones import BackboneSpec
    from kdbench.cells import Cell
    from kdbench.families import default_protocol
    from kdbench.suites import expand, load_suite

    started = time.time()
    check_folder(args.results_dir, "--results-dir")
    check_folder(args.cache_dir, "--cache-dir")
    if args.all or args.suite or args.quick:
        suite = load_suite(args.suite, quick=args.quick)
        cells = expand(suite, _strategies(args), _protocols(args))
        results_dir = Path(args.results_dir) / "quick" if args.quick else Path(args.results_dir)
        from kdbench.tuning import tuned_cells

        # size sweeps are not tuned: only the suite's own pairings get tuned rows
        cells += tuned_cells(expand(suite, _strategies(args), _protocols(args), sweeps=False), results_dir,
                             warn=_progress_note)
    else:
        suite = None
        settings, teacher_settings = _train_settings(args), _train_settings(args, "teacher_")
        teacher, student = BackboneSpec.parse(args.teacher), BackboneSpec.parse(args.student)
        cells = [
            Cell(args.dataset, teacher, student, name, seed, tuple(sorted(dict(args.hp).items())),
                 train=settings, teacher_train=teacher_settings, data_path=args.data_path, protocol=protocol)
            for protocol in (_protocols(args) or [default_protocol(teacher)])
            for seed in (args.seed or [0])
            for name in (_strategies(args) or ["scratch"])
        ]
        results_dir = Path(args.results_dir)
    runner, records = _run_cells(args, cells, results_dir, check_stored=suite is not None)
    failed = [r for r in records if r.get("status") != "ok"]
    if suite is None:
        for record in records:
            _print_record(record)
        _print_teachers(runner, cells)
    else:
        from kdbench.report import write_reports

        # an invocation that found every cell finished keeps the header of the one that ran them
        ran = runner.executed > 0
        outputs = write_reports(results_dir, Path(args.results_dir), quick=args.quick,
                                command="python -m kdbench " + " ".join(args.argv) if ran else None,
                                wall_seconds=time.time() - started if ran else None)
        for path in outputs:
            print(f"wrote {path}")
    if failed:
        print(f"kdbench: {len(failed)} cell(s) failed; see their result files", file=sys.stderr)
        return 1
    return 0


def _run_cells(args, cells, results_dir: Path, check_stored: bool, heal_cache: bool = True,
               before_training: Callable[[], None] | None = None):
    """Validate `cells`, refuse to overwrite other settings' runs, run them on the flags' executor:
    (runner, records). `check_stored`: a report will read every stored run, so stop at a damaged one now.
    `before_training()` runs once every check has passed, before the first cell trains."""
    from kdbench.runner import Runner, run_cells, validate_cells

    validate_cells(cells, args.device)
    runner = Runner(results_dir, args.cache_dir, args.device, args.force, log=_progress_note,
                    plugins=tuple(str(Path(p).resolve()) for p in args.plugin),
                    heal_cache=heal_cache and not getattr(args, "strict_cache", False))
    runner.check_no_overwrite(cells)
    if check_stored:
        from kdbench.report import load_tuning

        for _ in runner.store.records():
            pass
        load_tuning(results_dir)
    if before_training is not None:
        before_training()
    runner.executor = _executor(args, len(cells) if args.force else sum(not runner.is_done(c) for c in cells))
    try:
        records = run_cells(runner, cells)
    finally:
        runner.executor.close()
    return runner, records


def _progress_note(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _print_record(record: dict) -> None:
    test = record.get("test", {})
    cost = record.get("cost", {})
    if record.get("status") != "ok":
        print(f"{record['label']} seed {record['seed']}: FAILED {record.get('error')}")
        return
    print(f"{record['dataset']} {record['pairing']} {record['label']} seed {record['seed']}: "
          f"NDCG@10 {test['ndcg@10']:.4f} Recall@10 {test['recall@10']:.4f} "
          f"(teacher NDCG@10 {record.get('teacher_test', test)['ndcg@10']:.4f}) "
          f"params {cost.get('params')} {cost.get('throughput_users_per_s', 0):.0f} users/s "
          f"{record['training']['seconds_per_epoch']:.2f} s/epoch, best epoch {record['training']['best_epoch']}")


def _print_teachers(runner, cells) -> None:
    """Each teacher's settings and where it came from (cache key; trained now or loaded)."""
    seen = set()
    for cell in cells:
        settings = cell.teacher_settings
        described = (f"teacher {cell.teacher} (seed {cell.teacher_seed}) on {cell.dataset}: lr {settings.learning_rate}, "
                     f"batch {settings.batch_size}, max epochs {settings.max_epochs}, patience {settings.patience}")
        if not runner.executed:
            line = f"{described}; not needed: every cell had a finished result"
        else:
            key = runner.teacher_key(cell)
            line = f"{described}; cache key {key}: {runner.teacher_sources.get(key, 'not needed')}"
        if line not in seen:
            seen.add(line)
            print(line)


def _list(args) -> int:
    from tabulate import tabulate

    from kdbench.backbones import OPTION_KEYS, REPRESENTATIONS, SEQUENTIAL_MODELS, general_recommenders
    from kdbench.families import FAMILIES
    from kdbench.data import BUNDLED_DATASETS, downloadable_datasets
    from kdbench.strategies import STRATEGIES

    print("Datasets bundled (offline): " + ", ".join(BUNDLED_DATASETS))
    downloadable = downloadable_datasets()
    if args.all_datasets:
        print("Datasets RecBole downloads (needs internet): " + ", ".join(downloadable))
    else:
        print(f"Datasets RecBole downloads (needs internet): {len(downloadable)} (--all-datasets lists them); "
              "your own: --data-path DIR with DATASET.inter")
    print("\nBackbones (RecBole general recommenders, MODEL:DIM):")
    print("  " + ", ".join(general_recommenders()))
    print("  feature strategies need representations: " + ", ".join(REPRESENTATIONS))
    print("\nSequential backbones (RecBole sequential recommenders, MODEL:DIM[:OPTIONS], protocol leave-one-out):")
    for model in SEQUENTIAL_MODELS:
        options = ", ".join(f"{k}<n>: {v}" for k, v in OPTION_KEYS.get(model, {}).items())
        print(f"  {model}  (options {options}; e.g. {model}:64:{''.join(f'{k}1' for k in OPTION_KEYS.get(model, {}))})")
    rows = []
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
        supported = ", ".join(f.name for f in FAMILIES.values() if f.supports(name))
        family = f"{cls.family} (variant of {cls.variant_of}, not in 'all')" if cls.variant_of else cls.family
        rows.append([name, family, supported, cls.paper, defaults])
    print("\nStrategies:")
    print(tabulate(rows, headers=["name", "family", "backbones", "source", "defaults"], tablefmt="simple"))
    from kdbench.tuning_report import load_summaries, summary_table

    summaries = load_summaries(args.results_dir)
    if summaries:
        table = summary_table(summaries)[["dataset", "pairing", "strategy", "complete", "pruned", "failed",
                                          "finished", "best valid NDCG@10", "best hyperparameters"]]
        print(f"\nTuned hyperparameters ({Path(args.results_dir) / 'tuning'}; `run --all` uses finished ones):")
        print(tabulate(table, headers="keys", tablefmt="simple", showindex=False, floatfmt=".4f"))
    return 0


def _report(args) -> int:
    from kdbench.report import write_reports

    from kdbench.reproduction import write_reproduction_report

    root = check_folder(args.results_dir, "--results-dir")
    runs_dir = root / "quick" if args.quick else root
    reproductions = [] if args.quick else write_reproduction_report(root)
    if not (runs_dir / "runs").is_dir() and not reproductions:
        raise KdbenchError(f"no runs under '{runs_dir / 'runs'}': run `python -m kdbench run --all` first")
    outputs = write_reports(runs_dir, root, quick=args.quick) if (runs_dir / "runs").is_dir() else []
    for path in [*outputs, *reproductions]:
        print(f"wrote {path}")
    return 0


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise KdbenchError(f"{what} must be comma-separated integers, got '{text}'") from None
    if not values or min(values) < 0:
        raise KdbenchError(f"{what} must be non-negative integers, got '{text}'")
    return values


def _sweep(args) -> int:
    from kdbench.backbones import BackboneSpec
    from kdbench.data import check_dataset
    from kdbench.sweep import SWEEP_FOLDER, sweep_cells, write_sweep
    from kdbench.train import TrainSettings

    dims = _int_list(args.dims, "--dims")
    if min(dims) < 1:
        raise KdbenchError(f"--dims must be positive integers, got '{args.dims}'")
    seeds = _int_list(args.seeds, "--seeds")
    BackboneSpec.parse(args.model)
    check_dataset(args.dataset, args.data_path)
    check_folder(args.results_dir, "--results-dir")
    check_folder(args.cache_dir, "--cache-dir")
    settings = TrainSettings(learning_rate=args.lr, batch_size=args.batch_size,
                             patience=args.patience, max_epochs=args.epochs)
    cells = sweep_cells(args.dataset, args.model, dims, seeds, settings, args.data_path)
    _, records = _run_cells(args, cells, Path(args.results_dir) / SWEEP_FOLDER, check_stored=False)
    path = write_sweep(records, args.dataset, args.model, dims, seeds, settings, args.results_dir)
    print(path.read_text())
    print(f"wrote {path}")
    return 0


def _tune(args) -> int:
    from tqdm import tqdm

    from kdbench.runner import Runner, validate_cells
    from kdbench.suites import expand, load_suite
    from kdbench.tuning import TuningSettings, check_storages, study_cells, tune
    from kdbench.tuning_report import read_meta, record_invocation, write_tuning_report

    started = time.time()
    check_folder(args.results_dir, "--results-dir")
    check_folder(args.cache_dir, "--cache-dir")
    suite = load_suite(args.suite, quick=args.quick)
    cells = validate_cells(expand(suite, _strategies(args), _protocols(args), sweeps=False), args.device)
    if args.pairing:
        known = sorted({cell.pairing for cell in cells})
        unknown = [p for p in args.pairing if p not in known]
        if unknown:
            raise KdbenchError(f"unknown pairing '{unknown[0]}' for suite '{suite.name}': valid: {', '.join(known)}")
        cells = [cell for cell in cells if cell.pairing in args.pairing]
    settings = TuningSettings.from_spec(suite.spec.get("tuning"), args.trials)
    results_dir = Path(args.results_dir) / "quick" if args.quick else Path(args.results_dir)
    check_folder(results_dir, "--results-dir")
    read_meta(results_dir)  # a damaged invocation log or storage stops here, before anything runs
    check_storages(cells, results_dir, args.force)
    runner = Runner(results_dir, args.cache_dir, args.device, log=_progress_note,
                    plugins=tuple(str(Path(p).resolve()) for p in args.plugin))
    n_studies = len(study_cells(cells))
    runner.executor = _executor(args, n_studies)
    ran = 0
    try:
        with tqdm(total=n_studies * settings.trials, desc="kdbench tune", unit="trial", dynamic_ncols=True) as bar:
            def advance(study, outcome) -> None:
                nonlocal ran
                ran += 1
                state = "pruned" if outcome.pruned else "failed" if outcome.error else f"{outcome.value:.4f}"
                bar.set_postfix_str(f"{study.cell.pairing} {study.cell.strategy}: {state}")
                bar.update(1)

            summaries = tune(runner, cells, settings, force=args.force, on_trial=advance)
    finally:
        runner.executor.close()
        if ran:
            record_invocation(results_dir, "python -m kdbench " + " ".join(args.argv), time.time() - started, ran)
    for path in write_tuning_report(results_dir):
        print(f"wrote {path}")
    for summary in summaries:
        print(f"{summary['pairing']} {summary['strategy']}: best valid NDCG@10 "
              f"{summary['best_valid_ndcg@10'] if summary['best_valid_ndcg@10'] is None else round(summary['best_valid_ndcg@10'], 4)} "
              f"({summary['trials_counted']}/{summary['budget']} trials)")
    return 0


def _cost(args) -> int:
    from kdbench import inference_cost
    from kdbench.data import check_dataset
    from kdbench.suites import expand, load_suite

    check_folder(args.results_dir, "--results-dir")
    check_folder(args.cache_dir, "--cache-dir")
    catalogues = _int_list(args.catalogues, "--catalogues") if args.catalogues.strip() else []
    if catalogues and min(catalogues) < inference_cost.SYNTHETIC_USERS:
        raise KdbenchError(f"--catalogues must be at least {inference_cost.SYNTHETIC_USERS:,} items "
                           f"(one per synthetic user), got '{args.catalogues}'")
    suite = load_suite(args.suite, quick=args.quick)
    sittings = inference_cost.sittings(c for c in expand(suite) if c.strategy == "teacher")
    if not sittings:
        raise KdbenchError(f"suite '{suite.name}' has no general pairing to measure: a sequential run measures "
                           f"its inference cost per query itself (the leaderboard's sequential section)")
    for sitting in sittings:
        check_dataset(sitting.dataset, sitting.data_path)
    results_dir = Path(args.results_dir) / "quick" if args.quick else Path(args.results_dir)
    for sitting in sittings:
        payload = inference_cost.measure(sitting, catalogues, args.rounds, args.warmup, args.threads,
                                         args.cache_dir, args.min_seconds, log=_progress_note)
        path = inference_cost.write(sitting, payload, results_dir)
        print(f"wrote {path}")
    print(f"`python -m kdbench report{' --quick' if args.quick else ''}` puts these figures in the leaderboard")
    return 0


def _reproduce(args) -> int:
    from kdbench.reproduce import reproduce

    check_folder(args.cache_dir, "--cache-dir")
    if (args.suite is None) == (args.run_file is None):
        raise KdbenchError("reproduce needs either RUN.json (one stored run) or --suite FILE (a published table)")
    if args.suite is not None:
        return _reproduce_suite(args)
    result = reproduce(args.run_file, args.cache_dir, retrain_teacher=args.retrain_teacher,
                       heal_cache=not args.strict_cache, plugins=tuple(str(Path(p).resolve()) for p in args.plugin),
                       log=_progress_note)
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
    print(f"DIFFERENT in {len(result.differences)} value(s):")
    for line in result.differences:
        print(f"  {line}")
    return 1


def _reproduce_suite(args) -> int:
    """Run a suite with a `paper:` table into RESULTS_DIR/reproduction/NAME/ and write the comparison."""
    from dataclasses import replace

    from kdbench.reproduction import check_paper, reproduction_folder, write_paper, write_reproduction_report
    from kdbench.suites import expand, load_suite

    check_folder(args.results_dir, "--results-dir")
    suite = load_suite(args.suite)
    paper = check_paper(suite)
    protocols = _protocols(args)
    unknown = sorted(set(protocols or []) - {cell.protocol for cell in expand(suite)})
    if unknown:
        raise KdbenchError(f"suite '{suite.name}' has no protocol '{unknown[0]}': valid: "
                           f"{', '.join(sorted({cell.protocol for cell in expand(suite)}))}")
    cells = expand(suite, protocols_override=protocols)
    if args.data_path is not None:
        cells = [replace(cell, data_path=args.data_path) for cell in cells]
    folder = reproduction_folder(args.results_dir, suite.name)
    # the paper's table is written first, so that a reproduction cut off part-way still reports the
    # cells it finished (`report` reads this folder's runs beside it)
    _, records = _run_cells(args, cells, folder, check_stored=True,
                            before_training=lambda: write_paper(folder, suite.name, paper))
    for path in write_reproduction_report(args.results_dir):
        print(f"wrote {path}")
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        print(f"kdbench: {len(failed)} cell(s) failed; see their result files", file=sys.stderr)
        return 1
    return 0


def _data_import(args) -> int:
    from kdbench.importer import import_dataset

    summary = import_dataset(args.format, args.file, args.name, args.out, args.min_user_interactions)
    print(f"wrote {summary.path}: {summary.users:,} users, {summary.items:,} items, "
          f"{summary.interactions:,} interactions ({summary.dropped_users:,} users with fewer than "
          f"{args.min_user_interactions} items dropped); use it with --dataset {args.name} --data-path {args.out}")
    return 0


def _verify(args) -> int:
    from kdbench.verify import verify

    root = Path(args.results_dir)
    if not root.is_dir():
        raise KdbenchError(f"--results-dir '{root}' {'is not a folder' if root.exists() else 'does not exist'}")
    found = verify(root)
    for line in found.notes:
        print(f"note: {line}")
    for line in _grouped(found.stale):
        print(f"{'error' if args.strict else 'stale'}: {line}")
    for line in found.errors:
        print(f"error: {line}")
    failed = found.errors + (found.stale if args.strict else [])
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
