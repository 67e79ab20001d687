"""The command lines' argument parser: every refusal is one line (``PROG: error: ...``), exit 2.

``argparse`` prints its usage before an error; a user who typed ``-n -5`` needs the one line
that says what is wrong, as every other error of the ``stardata`` and ``stardiff`` commands is
(``--help`` still prints the usage). Flags that take numbers use
:func:`stardata.numbers.number_arg`, so they are checked here, before any work starts.
"""

from __future__ import annotations

import argparse

__all__ = ["OneLineParser", "parse"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr with exit status 2.

    The line starts as the command's other errors do: ``stardiff sample: error:`` (the program
    and its subcommand), or ``stardata: error:`` with ``with_command = False``.
    """

    with_command = True

    def error(self, message: str):
        prog = self.prog if self.with_command else self.prog.split()[0]
        self.exit(2, f"{prog}: error: {' '.join(message.split())}\n")


def parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace | int:
    """``parser.parse_args(argv)``, or the exit status when it exits (an error, ``--help``)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
