"""The ``mlops-nb serve`` command(s)."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this feature's sub-commands; each sets ``func`` (args -> exit code)."""
