"""The one exception type for mistakes a user can make (bad name, path, file or value).

The CLI turns it into a single line on stderr and exit code 2; everything else is a bug and keeps
its traceback.
"""


class KdbenchError(Exception):
    """A user-facing error: its message is one line naming the problem and the valid choices."""


def choices(names) -> str:
    return ", ".join(sorted(names))
