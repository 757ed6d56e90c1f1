"""The `lake` command line: mirrors the Python API."""

from lake.cli.app import app, main

__all__ = ["app", "main"]
