"""`python -m kdbench COMMAND`: parse the flags, load the plugins, dispatch to the command's handler.

A mistake a user can make ends in one line on stderr naming the problem (and the valid choices),
exit code 2, no traceback, nothing written to results/.
"""

from __future__ import annotations

import sys
import warnings
from typing import Sequence

import kdbench.strategies  # noqa: F401  (registers the built-in strategies)
from kdbench.cli.handlers import COMMANDS
from kdbench.cli.parser import build_parser
from kdbench.compat import check_install
from kdbench.errors import KdbenchError
from kdbench.executors.lifetime import exit_code, terminate_as_interrupt
from kdbench.registry import load_entry_point_plugins, load_plugin_file

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C; SIGTERM is 143 (`lifetime.exit_code`: 128 + the signal's number)


def one_line(text: str) -> str:
    """`text` with every character that could break its line or the terminal (a newline, a record
    separator, an escape a user's value or file name carried) written as its Python escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` (default: the process's arguments) names: its exit code."""
    warnings.filterwarnings("ignore")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with terminate_as_interrupt():  # SIGTERM unwinds like Ctrl-C: workers ended, finished cells kept
            check_install()  # a broken install (no RecBole, a missing import, pandas 3) in one line
            load_entry_point_plugins()
            for plugin in args.plugin:
                load_plugin_file(plugin)
            return COMMANDS[args.command](args)
    except KdbenchError as exc:
        print(f"kdbench: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the file system refused something no check above foresaw
        where = f" {exc.filename}" if exc.filename else ""
        print(one_line(f"kdbench: error: cannot access{where}: {exc.strerror or exc}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        kept = getattr(interrupt, "kept", "finished cells are kept")
        print(f"kdbench: interrupted; {one_line(kept)}; rerun the same command to resume", file=sys.stderr)
        return exit_code(interrupt)
