"""The ``mlops-nb`` command: parses, calls one core function, prints (``main.py`` holds the
parser and the run/sweep/runs commands, ``pipeline.py`` and ``schedule.py`` their groups,
``common.py`` the options and signal handling they share)."""

from mlops_nb.cli.main import main

__all__ = ["main"]
