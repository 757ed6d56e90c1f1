"""Helpers shared by the test suite (importable as `support` from every test folder)."""
