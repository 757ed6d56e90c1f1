"""Batch jobs: filled in by the batch issue."""
