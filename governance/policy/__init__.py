"""Policies: Casbin policy files, their checks, and the decisions and views built from them."""
