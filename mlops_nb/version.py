"""The package version, in one place (the facade, the CLI and the job agent read it)."""

__version__ = "0.1.0"
