"""Governance: who may read what, and the SQL rewrite pipeline that enforces it."""
