"""The command line: `python -m kdbench run | tune | cost | list | report | sweep | reproduce | verify | data import`.

`parser` declares the commands and their flags, `handlers` turns parsed flags into calls of the use
cases in `kdbench.commands` and prints their results, `main` dispatches through `handlers.COMMANDS`;
`data` adds the catalogue's `data list` and `data fetch`.
"""

from kdbench.cli.handlers import COMMANDS, _train_settings
from kdbench.cli.main import EXIT_USAGE, main
from kdbench.cli.parser import build_parser

__all__ = ["COMMANDS", "EXIT_USAGE", "_train_settings", "build_parser", "main"]
