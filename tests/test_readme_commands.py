"""The README's command list stays true: every `python -m kdbench ...` line of its "Using it" block
parses with the command-line parser (a renamed or removed flag fails here, not for a reader)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from kdbench.cli.parser import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def using_it_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Using it\n\n```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("python -m kdbench ")]


def test_the_using_it_block_lists_the_main_commands():
    commands = {shlex.split(line)[3] for line in using_it_commands()}
    assert {"run", "tune", "report", "verify", "sweep", "cost", "reproduce", "data"} <= commands


@pytest.mark.parametrize("line", using_it_commands())
def test_each_readme_command_parses(line):
    args = build_parser().parse_args(shlex.split(line)[3:])
    assert args.command == shlex.split(line)[3]
