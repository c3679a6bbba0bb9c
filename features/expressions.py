"""The small expression language of filters (``category == 'refund'``) and derived features
(``ratio(spend_30d, spend_90d)``): parsed with `ast`, checked against a whitelist, evaluated
vectorised over columns. Nothing is ever passed to `eval`."""
from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from tideline.errors import FeatureDefinitionError


def _ratio(a: Any, b: Any) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=(b != 0) & ~np.isnan(b))
    return out


def _fillna(x: Any, value: Any) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.where(np.isnan(x), value, x)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ratio": _ratio, "where": np.where, "log1p": np.log1p, "clip": np.clip, "abs": np.abs,
    "fillna": _fillna, "least": np.fmin, "greatest": np.fmax,
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
            ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call,
            ast.Name, ast.Constant, ast.Load, ast.List, ast.Tuple, ast.USub, ast.UAdd, ast.Not,
            ast.And, ast.Or, ast.In, ast.NotIn, *_BINARY, *_COMPARE)


@lru_cache(maxsize=1024)
def _parse(text: str) -> ast.Expression:
    return ast.parse(text, mode="eval")


def names_in(text: str, where: str) -> set[str]:
    """The column or feature names `text` uses; a clear error if it is not a valid expression."""
    try:
        tree = _parse(text)
    except SyntaxError as exc:
        raise FeatureDefinitionError(f"{where}: cannot parse {text!r}: {exc.msg}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise FeatureDefinitionError(
                f"{where}: {type(node).__name__} is not allowed in {text!r}; use arithmetic, "
                f"comparisons, and/or/not, in [...], and {', '.join(sorted(FUNCTIONS))}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise FeatureDefinitionError(
                    f"{where}: unknown function in {text!r}; use {', '.join(sorted(FUNCTIONS))}")
        elif isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            names.add(node.id)
    return names


def evaluate(text: str, columns: Mapping[str, Any]) -> Any:
    """The value of `text` with names bound to `columns` (numpy arrays or pandas Series)."""
    return _eval(_parse(text).body, columns)


def _mask(value: Any) -> np.ndarray:
    """A boolean numpy mask; a missing value is False (a comparison with null does not hold)."""
    if isinstance(value, pd.Series):
        return value.to_numpy(dtype=bool, na_value=False)
    return np.asarray(value, dtype=bool)


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            return env[name]
        case ast.List(elts=items) | ast.Tuple(elts=items):
            return [_eval(item, env) for item in items]
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand, env)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _eval(operand, env)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return ~_mask(_eval(operand, env))
        case ast.BinOp(left=left, op=op, right=right):
            return _BINARY[type(op)](_eval(left, env), _eval(right, env))
        case ast.BoolOp(op=op, values=values):
            combine = np.logical_and if isinstance(op, ast.And) else np.logical_or
            result = _mask(_eval(values[0], env))
            for value in values[1:]:
                result = combine(result, _mask(_eval(value, env)))
            return result
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            result, current = None, _eval(left, env)
            for op, comparator in zip(ops, comparators, strict=True):
                other = _eval(comparator, env)
                if isinstance(op, ast.In | ast.NotIn):
                    step = _mask(current.isin(other) if isinstance(current, pd.Series)
                                 else np.isin(current, np.asarray(other, dtype=object)))
                    step = ~step if isinstance(op, ast.NotIn) else step
                else:
                    step = _mask(_COMPARE[type(op)](current, other))
                result = step if result is None else result & step
                current = other
            return result
        case ast.Call(func=ast.Name(id=name), args=args):
            return FUNCTIONS[name](*(_eval(arg, env) for arg in args))
    raise FeatureDefinitionError(f"cannot evaluate {ast.dump(node)}")
