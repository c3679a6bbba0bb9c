"""The small expression language of filters (``category == 'refund'``, ``bucket(merchant, 16) ==
3``, ``domain(email) == 'example.com'``) and derived features (``ratio(spend_30d, spend_90d)``):
parsed with `ast`, checked against a whitelist, evaluated vectorised over columns. Nothing is
ever passed to `eval`."""
from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tideline.core.errors import FeatureDefinitionError


def _ratio(a: Any, b: Any) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    np.divide(a, b, out=out, where=(b != 0) & ~np.isnan(b))
    return out


def _fillna(x: Any, value: Any) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return np.where(np.isnan(x), value, x)


HASH_KEY = "0123456789123456"
"""The SipHash key of `value_hashes` (pandas' default, pinned here): changing it moves every
value to another bucket and changes every `approx_nunique`."""


def value_hashes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """A stable 64-bit hash of each value, the same in every process, run and partition, and
    whether the value is present. A value hashes as its text: text as it is, whole numbers in
    decimal (so 7, 7.0 and '7' agree), other numbers as Python's shortest repr. The text of each
    distinct value is hashed once (SipHash-2-4 with `HASH_KEY`, `pandas.util.hash_array`)."""
    codes, uniques = pd.factorize(np.atleast_1d(values) if np.isscalar(values) else values,
                                  use_na_sentinel=True)
    hashes = np.zeros(len(codes), dtype=np.uint64)
    known = codes >= 0
    if len(uniques):
        hashes[known] = pd.util.hash_array(_texts(np.asarray(uniques)), hash_key=HASH_KEY,
                                           categorize=False)[codes[known]]
    return hashes, known


def _texts(uniques: np.ndarray) -> np.ndarray:
    """Distinct values as Python strings (objects), for hashing."""
    if uniques.dtype.kind in "iuf":
        numbers = uniques.astype(float)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers)) & (np.abs(numbers) < 2**63)
        texts = np.empty(len(uniques), dtype=object)
        ints = uniques if uniques.dtype.kind in "iu" else numbers[whole].astype(np.int64)
        texts[whole if uniques.dtype.kind == "f" else slice(None)] = np.asarray(
            pa.array(ints).cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
        if uniques.dtype.kind == "f":  # per distinct fractional number, rare in a hashed column
            texts[~whole] = [repr(float(x)) for x in numbers[~whole]]
        return texts
    return np.array([x if isinstance(x, str) else str(x) for x in uniques], dtype=object)


def _bucket(values: Any, n: int) -> np.ndarray:
    """The hashing trick: a stable bucket 0..n-1 of each value (`value_hashes` modulo n); -1
    where the value is missing."""
    hashes, known = value_hashes(values)
    return np.where(known, (hashes % np.uint64(n)).astype(np.int64), -1)


def _text(values: Any) -> pd.Series:
    series = values if isinstance(values, pd.Series) else pd.Series(
        np.atleast_1d(np.asarray(values, dtype=object)))
    return series.astype("string[pyarrow]")


def _domain(values: Any) -> pd.Series:
    """The domain of each e-mail address, lower-cased: the text after its last '@'; missing
    where there is none."""
    return _text(values).str.extract(r"@([^@]+)$", expand=False).str.lower()


def _length(values: Any) -> pd.Series:
    """The number of characters of each value's text; missing where the value is."""
    return _text(values).str.len()


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ratio": _ratio, "where": np.where, "log1p": np.log1p, "clip": np.clip, "abs": np.abs,
    "fillna": _fillna, "least": np.fmin, "greatest": np.fmax, "bucket": _bucket,
    "domain": _domain, "length": _length,
}
TRANSFORMATIONS = {"bucket", "domain", "length"}
"""Functions that show only a hash bucket, an e-mail domain or a length of a column: the ways a
filter may use a PII-tagged column (`exposed_names`)."""
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
            if node.func.id == "bucket":
                _check_bucket(node, text, where)
            elif node.func.id in TRANSFORMATIONS and (node.keywords or len(node.args) != 1):
                raise FeatureDefinitionError(
                    f"{where}: {ast.unparse(node)!r} in {text!r} takes one column, e.g. "
                    f"{node.func.id}(email)")
        elif isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            names.add(node.id)
    return names


def exposed_names(text: str, where: str) -> set[str]:
    """The names `text` uses other than as the column of a transformation (`bucket(c, n)`,
    `domain(c)`, `length(c)`): the columns whose values the expression compares as they are."""
    names_in(text, where)
    exposed: set[str] = set()

    def visit(node: ast.AST) -> None:
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in TRANSFORMATIONS and isinstance(node.args[0], ast.Name)):
            for arg in node.args[1:]:
                visit(arg)
            return
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            exposed.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(_parse(text))
    return exposed


def _check_bucket(node: ast.Call, text: str, where: str) -> None:
    """`bucket(column, n)`: n a positive whole number written in the expression, so every
    partition and run buckets alike."""
    size = node.args[1] if len(node.args) == 2 else None
    if node.keywords or not (isinstance(size, ast.Constant) and type(size.value) is int
                             and size.value > 0):
        raise FeatureDefinitionError(
            f"{where}: {ast.unparse(node)!r} in {text!r} needs a column and a positive whole "
            "number of buckets, e.g. bucket(merchant, 16)")


def evaluate(text: str, columns: Mapping[str, Any], calls: dict[str, Any] | None = None
             ) -> Any:
    """The value of `text` with names bound to `columns` (numpy arrays or pandas Series).
    `calls` remembers function calls' values across expressions over the same columns (the
    filters `bucket(session_id, 8) == 0` .. `== 7` hash the column once)."""
    return _eval(_parse(text).body, columns, calls)


def _mask(value: Any) -> np.ndarray:
    """A boolean numpy mask; a missing value is False (a comparison with null does not hold)."""
    if isinstance(value, pd.Series):
        return value.to_numpy(dtype=bool, na_value=False)
    return np.asarray(value, dtype=bool)


def _number(value: Any) -> Any:
    """A condition counts as 0 or 1 in arithmetic, as in Python (`(a > 0) + (b > 0)` is 2 when
    both hold; numpy would add booleans as `or`)."""
    if isinstance(value, np.ndarray | pd.Series) and value.dtype == bool:
        return value.astype(np.int64)
    return value


def _eval(node: ast.AST, env: Mapping[str, Any], calls: dict[str, Any] | None = None
          ) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            return env[name]
        case ast.List(elts=items) | ast.Tuple(elts=items):
            return [_eval(item, env, calls) for item in items]
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_number(_eval(operand, env, calls))
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _eval(operand, env, calls)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return ~_mask(_eval(operand, env, calls))
        case ast.BinOp(left=left, op=op, right=right):
            return _BINARY[type(op)](_number(_eval(left, env, calls)),
                                     _number(_eval(right, env, calls)))
        case ast.BoolOp(op=op, values=values):
            combine = np.logical_and if isinstance(op, ast.And) else np.logical_or
            result = _mask(_eval(values[0], env, calls))
            for value in values[1:]:
                result = combine(result, _mask(_eval(value, env, calls)))
            return result
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            result, current = None, _eval(left, env, calls)
            for op, comparator in zip(ops, comparators, strict=True):
                other = _eval(comparator, env, calls)
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
            if calls is None:
                return FUNCTIONS[name](*(_eval(arg, env) for arg in args))
            key = ast.dump(node)
            if key not in calls:
                calls[key] = FUNCTIONS[name](*(_eval(arg, env, calls) for arg in args))
            return calls[key]
    raise FeatureDefinitionError(f"cannot evaluate {ast.dump(node)}")
