"""Lakeward: governed Delta tables, policy-rewritten SQL and sandboxed batch jobs."""

from lake import errors
from lake.lake import Lake, connect

__all__ = ["Lake", "connect", "errors"]
