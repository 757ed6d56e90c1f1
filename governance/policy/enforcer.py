"""Casbin's enforcer, with its matcher parsed once per text rather than at every decision.

pycasbin parses the model's matcher expression (Python's `ast.parse`) on each `enforce`: about
0.2 ms, paid for every column of every table a new engine decides on (a policy change, a new
user). The parsed tree depends on the text alone and evaluation only reads it, so one tree per
text serves every decision; everything else is casbin's own code.
"""

from __future__ import annotations

import functools
from typing import Any

import casbin
from casbin.util.expression import SimpleEval


@functools.lru_cache(maxsize=256)
def _parsed(expr: str) -> Any:
    return casbin.Enforcer._get_expression(expr).ast_parsed_value


class Enforcer(casbin.Enforcer):
    @staticmethod
    def _get_expression(expr: str, functions: dict | None = None) -> SimpleEval:
        evaluator = SimpleEval("", functions)
        evaluator.expr = expr
        evaluator.ast_parsed_value = _parsed(expr)
        return evaluator
