"""`python -m switchboard` runs the command line."""

from __future__ import annotations

from switchboard.cli.main import main

main()
