"""``python -m consortia`` and the ``consortia`` command: the command line of :mod:`consortia.cli`.

``consortia --version`` alone is answered here, before the command line is loaded: Typer,
click and the command tree cost ~40 ms of imports and ~10 ms of building, three times a bare
interpreter's start, to print one line. The answer is the one the command line gives
(``tests/test_start_up.py`` compares them); every other invocation, ``--version`` with other
arguments included, goes to :func:`consortia.cli.main`.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the ``consortia`` script and of ``python -m consortia``."""
    if sys.argv[1:] == ["--version"]:
        from consortia import __version__

        sys.stdout.write(f"consortia {__version__}\n")
        sys.stdout.flush()
        return
    from consortia.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
