"""`python -m aifactory` runs the CLI."""

from aifactory.cli import main

main()
