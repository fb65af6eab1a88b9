"""Small helpers every layer may use: ceiling division and the one-message input checks.

Each check raises :class:`jaxvis.errors.JaxvisError` with one line naming the option, the allowed
range and the value given, so the library and the CLI say the same thing about the same mistake.
"""
from __future__ import annotations

import math
import numbers

from jaxvis.errors import JaxvisError


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers, ``b > 0``."""
    return -(-a // b)


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (either bound optional); raises JaxvisError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, numbers.Real) and float(value).is_integer()):
            raise JaxvisError(f'{name} must be a whole number, got {value!r}')
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise JaxvisError(f'{name} must be {_range(low, high)}, got {v}')
    return v


def check_float(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the given range (open ends with ``low_open``/``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise JaxvisError(f'{name} must be a finite number, got {value!r}')
    v = float(value)
    bad = ((low is not None and (v < low or (low_open and v == low)))
           or (high is not None and (v > high or (high_open and v == high))))
    if bad:
        raise JaxvisError(f'{name} must be {_range(low, high, low_open, high_open)}, got {value}')
    return v


SEED_MAX = 2**32 - 1  # jax.random.key keeps 32 bits without x64: 2**32 gives the same key as 0, -1 as 2**32 - 1


def check_seed(seed) -> int:
    """A random seed for ``jax.random.key``: a whole number in ``[0, 2**32 - 1]`` (every other value
    would alias one of those, or overflow)."""
    return check_int('seed', seed, low=0, high=SEED_MAX)


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise JaxvisError(f'{name} must be one of {", ".join(map(str, allowed))}; got {value!r}')


def _range(low, high, low_open=False, high_open=False) -> str:
    lo, hi = _num(low), _num(high)
    if low is not None and high is not None:
        return f'in {"(" if low_open else "["}{lo}, {hi}{")" if high_open else "]"}'
    if low is not None:
        return f'{">" if low_open else ">="} {lo}'
    return f'{"<" if high_open else "<="} {hi}'


def _num(v) -> str:
    """A bound as written: whole numbers in full (4294967295), others as ``:g``."""
    return '' if v is None else str(v) if isinstance(v, int) else f'{v:g}'
