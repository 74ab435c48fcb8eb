"""The ``mlops-nb pipeline`` commands (filled in by the pipeline feature)."""

from __future__ import annotations

import argparse


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
