"""``python -m consortia``: the same command line as ``consortia``."""

from consortia.cli import main

main()
