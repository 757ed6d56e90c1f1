"""Batch jobs: a durable job model in the metadata store, a Ray-backed scheduler with queues,
fair share, spot-style preemption and checkpoints, and sandboxed attempts (`batch.runtime`).

`batch.api.Batch` is the entry point (`lk.batch`); it never imports `lake`.
"""
