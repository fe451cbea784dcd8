"""The command line of the catalogue: `python -m kdbench data list` and `data fetch NAME`.

`kdbench.cli` adds these subcommands to its `data` command and hands them their parsed arguments.
"""

from __future__ import annotations

import argparse

from kdbench.data.catalogue import CATALOGUE
from kdbench.data.location import DATA_ENV, data_dir, default_data_dir, is_present

COMMANDS = ("list", "fetch")
DATA_PATH_HELP = f"the data folder (default: ${DATA_ENV}, else ~/.cache/kdbench/data; now {{}})"


def add_data_commands(actions: "argparse._SubParsersAction") -> None:
    """`list` and `fetch` under `python -m kdbench data` (`actions`: its subparsers)."""
    listing = actions.add_parser("list", help="the dataset catalogue: sources, hashes, statistics, what is here",
                                 description="List the datasets `data fetch` knows: public source, SHA-256, "
                                 "format, filter, the statistics the import reproduces, and whether each is "
                                 "in the data folder.")
    listing.add_argument("--data-path", metavar="DIR", help=DATA_PATH_HELP.format(default_data_dir()))
    fetch = actions.add_parser("fetch", help="download a catalogue dataset, check it, import it",
                               description="Download NAME's file (progress bar), check its SHA-256, import it "
                               "(the catalogue's format and filter), check the statistics, and write "
                               "DIR/NAME/NAME.inter atomically; runs then read it with --dataset NAME (and "
                               "--data-path DIR when not the default folder). Without network: download the "
                               "file by hand and give it with --from-file.")
    fetch.add_argument("name", metavar="NAME", help=f"a catalogue dataset: {', '.join(CATALOGUE.names())}")
    fetch.add_argument("--data-path", metavar="DIR", help=DATA_PATH_HELP.format(default_data_dir()))
    fetch.add_argument("--from-file", metavar="PATH",
                       help="import this file, downloaded by hand, instead of downloading (same SHA-256 check)")
    fetch.add_argument("--url", metavar="URL", help="download from this address (a mirror) instead of the "
                       "catalogue's; the file must still have the catalogue's SHA-256")
    fetch.add_argument("--force", action="store_true", help="fetch and import again even if the folder has it")


def run_data_command(args: argparse.Namespace) -> int:
    if args.data_command == "list":
        return _list(args)
    return _fetch(args)


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from kdbench.data.loading import BUNDLED_DATASETS

    folder = data_dir(args.data_path)
    print(f"Data folder: {folder}" + ("" if args.data_path else f" (${DATA_ENV}, else ~/.cache/kdbench/data)"))
    print(f"Bundled with RecBole (nothing to fetch): {', '.join(BUNDLED_DATASETS)}\n")
    rows = []
    for name in CATALOGUE.names():
        entry = CATALOGUE.get(name)
        rows.append([name, entry.format, entry.filter, f"{entry.users:,}", f"{entry.items:,}",
                     f"{entry.interactions:,}", "yes" if entry.time_ordered else "no",
                     "yes" if is_present(name, args.data_path) else "no"])
    print(tabulate(rows, headers=["name", "format", "filter", "users", "items", "interactions", "time order",
                                  "here"], tablefmt="simple", disable_numparse=True))
    print()
    for name in CATALOGUE.names():
        entry = CATALOGUE.get(name)
        print(f"{name}: {entry.summary}\n  source {entry.url}\n  sha256 {entry.sha256}\n  {entry.reference}")
    print("\nFetch one with `python -m kdbench data fetch NAME`; the names amazon-beauty and yelp are these "
          "files, not RecBole's downloads of the same name.")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from kdbench.data.fetch import fetch

    from kdbench.data.loading import BUNDLED_DATASETS
    from kdbench.errors import KdbenchError

    if args.name in BUNDLED_DATASETS:
        raise KdbenchError(f"{args.name} is bundled with RecBole: nothing to fetch (runs use it without --data-path)")
    entry = CATALOGUE.get(args.name)
    done = fetch(entry, args.data_path, from_file=args.from_file, url=args.url, force=args.force)
    use = f"--dataset {entry.name}" + (f" --data-path {args.data_path}" if args.data_path is not None else "")
    summary = done.summary
    if done.already_present:
        print(f"{entry.name} is already in {summary.path.parent} (SHA-256 checked when fetched); "
              f"--force fetches it again; runs read it with {use}")
        return 0
    print(f"wrote {summary.path}: {summary.users:,} users, {summary.items:,} items, {summary.interactions:,} "
          f"interactions, as the catalogue says; runs read it with {use}")
    return 0
