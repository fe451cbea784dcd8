"""The command line's parser: every command, its flags, their defaults and their help texts.

Flag values that argparse can check alone (positive numbers, KEY=VALUE pairs, choices) are checked
here; everything else is checked by the use case the command calls (`kdbench.commands`).
"""

from __future__ import annotations

import argparse
import math
import os

from kdbench.commands.run import SINGLE_STUDENT, SINGLE_TEACHER
from kdbench.families import PROTOCOLS
from kdbench.executors import EXECUTORS
from kdbench.cli.data import add_data_commands
from kdbench.data.importer import FORMATS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None  # argparse's own wording
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text.strip()}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text.strip()}")
    return value


def _add_cache_flag(parser) -> None:  # a parser or an argument group
    parser.add_argument("--cache-dir", default=os.environ.get("KDBENCH_CACHE", ".kdbench_cache"),
                        help="teacher cache (default: .kdbench_cache or $KDBENCH_CACHE)")


def _add_location_flags(parser: argparse.ArgumentParser, force_help: str) -> None:
    where = parser.add_argument_group("where")
    where.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device")
    where.add_argument("--results-dir", default="results", help="where results go (default: results)")
    _add_cache_flag(where)
    where.add_argument("--force", action="store_true", help=force_help)


def _add_replace_stale_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replace-stale", action="store_true",
                        help="redo only the cells whose stored run was made with other settings or code (after "
                             "a change to what strategies compute or records hold), keeping current ones: it resumes")


def _add_executor_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parallel execution")
    group.add_argument("--workers", type=_positive_int,
                       help="cells run side by side in this many worker processes (default: the number of "
                            "cores; 1 runs in this process). Each cell uses one torch thread either way, so "
                            "results do not depend on this")
    group.add_argument("--executor", choices=list(EXECUTORS), default="local",
                       help="local worker processes (default) or Ray tasks")
    group.add_argument("--address", metavar="auto|HOST:PORT",
                       help="with --executor ray: the running cluster to join (default: a private local Ray instance)")


def _add_protocol_flag(parser: argparse.ArgumentParser, what: str, default: str) -> None:
    parser.add_argument("--protocol", action="append", metavar="NAME",
                        help=f"evaluation protocol preset ({', '.join(f'{p.name}: {p.summary}' for p in PROTOCOLS.values())}); "
                             f"{what} (default: {default}; repeatable or comma-separated)")


def _hparam(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _add_suite_flags(parser: argparse.ArgumentParser, all_help: str, suite_help: str, quick_help: str) -> None:
    """--all / --suite FILE / --quick, as `tune` and `cost` take them (`run` groups them with more)."""
    parser.add_argument("--all", action="store_true", help=all_help)
    parser.add_argument("--suite", metavar="FILE", help=suite_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)


def _add_strict_cache_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict-cache", action="store_true",
                        help="stop on a damaged teacher cache entry instead of moving it aside and "
                             "training the teacher again")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; its flags, defaults and help texts are the command line's reference."""
    parser = argparse.ArgumentParser(
        prog="python -m kdbench",
        description="Benchmark knowledge-distillation strategies for recommenders on RecBole.",
    )
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE",
                        help="import a Python file that registers extra strategies (repeatable)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parser(commands)
    _add_tune_parser(commands)
    _add_cost_parser(commands)
    _add_list_parser(commands)
    _add_sweep_parser(commands)
    _add_sweep_data_parser(commands)
    _add_report_parser(commands)
    _add_reproduce_parser(commands)
    _add_verify_parser(commands)
    _add_data_parser(commands)
    _add_export_teacher_parser(commands)
    return parser


def _add_export_teacher_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export-teacher", help="write a teacher's top-K lists (and item embeddings) "
                                 "as a teacher file for --teacher file:PATH",
                                 description="Train (or load the cached) teacher and write its per-user (per-query) "
                                 "top-K lists, scores and item embeddings in kdbench's teacher file format.")
    export.add_argument("--output", required=True, metavar="DIR", help="folder to write the teacher file to")
    export.add_argument("--dataset", default="ml-100k", help="RecBole dataset name (default: ml-100k)")
    export.add_argument("--data-path", metavar="DIR", help="folder with DATASET.inter in RecBole atomic format")
    export.add_argument("--teacher", default="BPR:200", help="teacher MODEL:DIM (default: BPR:200)")
    export.add_argument("--k", type=_positive_int, default=100, help="list length K per row (default 100)")
    export.add_argument("--no-embeddings", action="store_true", help="leave the item embeddings out")
    export.add_argument("--teacher-seed", type=_non_negative_int, default=0, help="teacher seed (default 0)")
    export.add_argument("--protocol", metavar="NAME", help="evaluation protocol preset (default: the family's)")
    for flag, kind, text in (("--teacher-epochs", _positive_int, "maximum epochs (default 300)"),
                             ("--teacher-lr", _positive_float, "learning rate (default 0.001)"),
                             ("--teacher-batch-size", _positive_int, "batch size (default 2048)"),
                             ("--teacher-patience", _positive_int, "patience (default 10)"),
                             ("--teacher-eval-every", _positive_int, "epochs between validations (default 1)")):
        export.add_argument(flag, type=kind, help=f"teacher's {text}")
    export.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device")
    _add_cache_flag(export)
    _add_strict_cache_flag(export)


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
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
    grid.add_argument("--strict", action="store_true",
                      help="with --all/--suite: stop (exit 2) when a catalogue dataset of the suite is not in "
                           "the data folder, instead of naming it and running the rest")
    grid.add_argument("--dataset", metavar="DATASET",
                      help="a single run's RecBole dataset name (default: ml-100k, bundled); with --all/--suite, "
                           "only these of the suite's datasets (comma-separated)")
    single = run.add_argument_group("single run")
    single.add_argument("--data-path", metavar="DIR", help="folder with DATASET.inter in RecBole atomic format")
    single.add_argument("--teacher", default=SINGLE_TEACHER,
                        help=f"teacher MODEL:DIM, or file:PATH for a teacher file (default: {SINGLE_TEACHER}, not "
                             f"the leaderboard's pairing: the run ends naming the flags that give its settings)")
    single.add_argument("--student", default=SINGLE_STUDENT, help=f"student MODEL:DIM (default: {SINGLE_STUDENT})")
    single.add_argument("--strategy", action="append", metavar="NAME",
                        help="strategy (repeatable or comma-separated; default: scratch; 'all' for every one)")
    single.add_argument("--seed", action="append", type=_non_negative_int, metavar="N", help="model seed (repeatable; default 0)")
    single.add_argument("--hp", action="append", type=_hparam, default=[], metavar="KEY=VALUE",
                        help="override a strategy hyperparameter (repeatable)")
    _add_protocol_flag(single, "with --all/--suite it replaces the suite's `protocol:`",
                       "the suite's, else random")
    training = run.add_argument_group("student training (a single run; the teacher has its own flags)")
    training.add_argument("--epochs", type=_positive_int, help="maximum epochs (default 300; early stopping decides)")
    training.add_argument("--lr", type=_positive_float, help="learning rate (default 0.001)")
    training.add_argument("--batch-size", type=_positive_int, help="training batch size (default 2048)")
    training.add_argument("--patience", type=_positive_int, help="epochs since the best validation before stopping (default 10)")
    training.add_argument("--eval-every", type=_positive_int, help="epochs between validations (default 1)")
    teacher = run.add_argument_group("teacher training (a single run; cached by these settings)")
    teacher.add_argument("--teacher-epochs", type=_positive_int, help="teacher's maximum epochs (default 300)")
    teacher.add_argument("--teacher-lr", type=_positive_float, help="teacher's learning rate (default 0.001)")
    teacher.add_argument("--teacher-batch-size", type=_positive_int, help="teacher's batch size (default 2048)")
    teacher.add_argument("--teacher-patience", type=_positive_int, help="teacher's patience (default 10)")
    teacher.add_argument("--teacher-eval-every", type=_positive_int, help="teacher's epochs between validations (default 1)")
    _add_location_flags(run, "redo cells that already have a result")
    _add_replace_stale_flag(run)
    _add_strict_cache_flag(run)
    _add_executor_flags(run)



def _add_tune_parser(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser("tune", help="give every strategy the same Optuna budget on validation data",
                               description="Tune every strategy of a suite (scratch included) with the same "
                               "Optuna budget in training epochs (the published defaults first, then TPE with "
                               "successive halving) on validation NDCG@10; the test split is never scored. "
                               "Studies go to RESULTS_DIR/tuning/ (SQLite) and resume where they stopped; "
                               "`run` then adds a tuned row per strategy.")
    _add_suite_flags(tune, "tune the default suite (the default)",
                     "tune the suite in this YAML file (its `tuning:` block)", "the suite's reduced version")
    tune.add_argument("--strategy", action="append", metavar="NAME",
                      help="only these strategies (repeatable or comma-separated)")
    tune.add_argument("--trials", type=_positive_int, help="budget in trials per study (default: the suite's tuning block)")
    tune.add_argument("--budget-epochs", type=_positive_int, help="budget in training epochs per study (default: the suite's)")
    tune.add_argument("--pairing", action="append", metavar="TEACHER->STUDENT",
                      help="only this pairing of the suite, e.g. 'BPR:64->BPR:5' (repeatable)")
    tune.add_argument("--dataset", action="append", metavar="DATASET",
                      help="only these of the suite's datasets, e.g. citeulike-t (repeatable or comma-separated)")
    _add_protocol_flag(tune, "replaces the suite's `protocol:`", "the suite's")
    _add_location_flags(tune, "start studies made with other settings again")
    _add_strict_cache_flag(tune)
    _add_executor_flags(tune)



def _add_cost_parser(commands: argparse._SubParsersAction) -> None:
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



def _add_list_parser(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser("list", help="list datasets, backbones and strategies",
                                  description="List bundled datasets, known backbones and registered strategies.")
    listing.add_argument("--all-datasets", action="store_true", help="also list every downloadable RecBole dataset")
    listing.add_argument("--results-dir", default="results", help="where tuned hyperparameters are read (default: results)")



def _add_sweep_parser(commands: argparse._SubParsersAction) -> None:
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
    _add_replace_stale_flag(sweep)
    _add_cache_flag(sweep)
    _add_executor_flags(sweep)



def _add_report_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="rebuild leaderboard, CSV, JSON and plot from stored runs",
                                 description="Rebuild results/leaderboard.md, .csv, .json and pareto.png from "
                                 "the run files, and results/reproduction.md and .csv from the runs under "
                                 "results/reproduction/, without training anything.")
    report.add_argument("--results-dir", default="results", help="where the runs are (default: results)")
    report.add_argument("--quick", action="store_true", help="rebuild the quick leaderboard instead")
    report.add_argument("--changes-from", metavar="CSV",
                        help="an earlier leaderboard CSV (e.g. `git show REV:results/leaderboard.csv > before.csv`): "
                        "also write RESULTS_DIR/leaderboard-changes.md, each table's rows before and after and "
                        "which moved")



def _add_reproduce_parser(commands: argparse._SubParsersAction) -> None:
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
    reproduce.add_argument("--data-path", metavar="DIR", help="the folder holding the dataset (replaces the "
                           "suite's `data_path:`, or the folder the run file names)")
    reproduce.add_argument("--results-dir", default="results", help="with --suite: where results go (default: results)")
    reproduce.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="with --suite: torch device")
    reproduce.add_argument("--force", action="store_true", help="with --suite: redo cells that already have a result")
    _add_protocol_flag(reproduce, "with --suite: only these of the suite's protocols", "all of them")
    _add_executor_flags(reproduce)
    _add_cache_flag(reproduce)
    reproduce.add_argument("--retrain-teacher", action="store_true",
                           help="train the teacher again (in a scratch cache) instead of loading it")
    _add_strict_cache_flag(reproduce)



def _add_verify_parser(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser("verify", help="check stored results: parse, identity, leaderboards",
                                 description="Check that every stored run file parses, that its identity matches "
                                 "the current code (or flag it stale), and that the leaderboard files are what "
                                 "`report` writes now. Exit code 1 on a damaged file or a leaderboard mismatch.")
    verify.add_argument("--results-dir", default="results", help="the results folder (default: results)")
    verify.add_argument("--strict", action="store_true",
                        help="count stale runs, and records holding an absolute folder, as errors too")
    verify.add_argument("--drop-locations", action="store_true",
                        help="first rewrite the run records whose config.data_path is an absolute folder of a "
                        "catalogue dataset, as new records store it (null; identities unchanged)")



def _add_data_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="the dataset catalogue (list, fetch) and importing your own files",
                               description="Dataset tools.")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_import = data_commands.add_parser(
        "import", help="convert a dataset file into RecBole atomic files that keep its order",
        description="Write OUT/NAME/NAME.inter (user_id, item_id and a timestamp column holding each "
                    "pair's position in FILE), usable as `--dataset NAME --data-path OUT`; the `ordered` "
                    "protocols split each user's interactions in the file's order.")
    data_import.add_argument("file", metavar="FILE", help="the file to import")
    data_import.add_argument("--format", required=True, choices=FORMATS.names(),
                             help="; ".join(f"{n}: {FORMATS.get(n).summary}" for n in FORMATS.names()))
    data_import.add_argument("--name", required=True, help="dataset name (names the folder and the .inter file)")
    data_import.add_argument("--min-user-interactions", type=_non_negative_int, default=0, metavar="N",
                             help="keep users with at least N interactions (default 0: all)")
    data_import.add_argument("--out", default="data", metavar="DIR", help="where NAME/NAME.inter goes (default: data)")
    add_data_commands(data_commands)


def _add_sweep_data_parser(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep-data", help="NDCG@10 vs share of training data: teacher, scratch, top strategies",
        description="Train the teacher, scratch and distilled students of one pairing on shares of each "
                    "user's training interactions (validation and test fixed) and write "
                    "results/data_share_DATASET_PAIRING.md/.csv/.png. Each share's runs live under "
                    "RESULTS_DIR/data_share/share-S/ and resume cell by cell; a 100% cell that `run` finished "
                    "(results/runs/) is copied, not trained again.")
    sweep.add_argument("--dataset", default="ml-100k")
    sweep.add_argument("--data-path", metavar="DIR")
    sweep.add_argument("--teacher", default="BPR:64")
    sweep.add_argument("--student", default="BPR:5")
    sweep.add_argument("--shares", default="0.25,0.5,1", help="comma-separated shares in (0, 1] (default 0.25,0.5,1)")
    sweep.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    sweep.add_argument("--subsample-seed", type=_non_negative_int, default=0,
                       help="seed of the per-user draw of the kept training interactions (default 0)")
    sweep.add_argument("--strategy", action="append", metavar="NAME",
                       help="strategies besides scratch (repeatable or comma-separated; default: the 3 whose "
                            "tuning studies reached the best validation NDCG@10)")
    sweep.add_argument("--variant", choices=["tuned", "defaults"], default="tuned",
                       help="tuned hyperparameters (from RESULTS_DIR/tuning; default) or published defaults")
    sweep.add_argument("--suite", metavar="FILE",
                       help="the suite whose training settings the pairing uses (default: the default suite)")
    sweep.add_argument("--epochs", type=_positive_int, help="max epochs of teacher and students (default: the suite's)")
    sweep.add_argument("--patience", type=_positive_int, help="patience of teacher and students (default: the suite's)")
    _add_location_flags(sweep, "redo cells that already have a result")
    _add_replace_stale_flag(sweep)
    _add_executor_flags(sweep)
