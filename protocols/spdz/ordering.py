"""Comparison-based functions of secret arrays: ``< <= > >= == !=``, sign, abs, ReLU, max, argmax.

Every function here is built on one primitive, :func:`compare` (:mod:`protocols.spdz.compare`:
exact ``[x < 0]`` and ``[x = 0]`` by bit decomposition, 6 rounds), plus Beaver products, and is
recorded lazily like every other operation, so independent comparisons of one program level
share their rounds.

Results are integer secret arrays (``frac_bits == 0``) holding 0/1 (comparisons), -1/0/1
(``sign``) or indices (``argmax``); ``abs``, ``relu``, ``maximum`` and the reductions keep
their operand's kind.

Exactness and range: ``a < b`` is ``LTZ(a - b)``: exact whenever ``a - b`` fits in a signed
64-bit integer, which holds for any two fixed-point arrays (encodings are below 2^62 in
magnitude) and for integers with ``|a|, |b| < 2^62``; equality is exact for all values.

Cost per element. "LTZ" is one less-than-zero test: 89 triples, 64 bits and 1 random value,
or 57 triples and 1 comparison mask from a provider that has them; "EQZ" 63, or 31 and a mask;
both from one mask 120, or 88 and a mask (:func:`protocols.spdz.compare.cost`).

==========================  ============  ==========================================
operation                   rounds        preprocessing per element
==========================  ============  ==========================================
``<, <=, >, >=``            6             1 LTZ
``==, !=``                  6             1 EQZ
``sign``                    6             LTZ and EQZ on one mask
``abs``, ``relu``           7             1 LTZ + 1 triple
``maximum(a, b)``           7             1 LTZ + 1 triple
``max`` over ``m``          7 ceil(lg m)  (m - 1) (LTZ + 1 triple)
``argmax`` (index)          7 ceil(lg m)  max's + up to (m - 1) triples
``argmax`` (one-hot)        7 ceil(lg m)  max's + about m lg(m) triples
==========================  ============  ==========================================

Ties: ``argmax``/``argmin`` return the first index of the extreme value, as numpy does.

Security: the engine's (active, dishonest majority, abort; :mod:`protocols.spdz.engine`):
only uniformly masked values are opened, all MAC-checked before any output; shapes and the
reduced axis are public, values, comparison outcomes and indices are not. Bytes per party:
``16 (n - 1)`` per opened element (see :mod:`protocols.spdz.compare` for a comparison's).
Papers: as :mod:`protocols.spdz.compare`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError
from protocols.spdz import compare as cmp
from protocols.spdz.array import SecretArray, concatenate, where

__all__ = [
    "compare",
    "ltz",
    "eqz",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "equal",
    "not_equal",
    "sign",
    "absolute",
    "relu",
    "maximum",
    "minimum",
    "reduce_max",
    "reduce_min",
    "argmax",
    "argmin",
]


def compare(x: SecretArray, want: cmp.Want) -> SecretArray:
    """``[x < 0]`` and/or ``[x = 0]`` stacked on a new leading axis (one protocol run).

    Raises:
        ConfigError: ``x`` is not a secret array.
    """
    if not isinstance(x, SecretArray):
        raise ConfigError("compare needs a secret array")
    eng = x.engine
    shape = (want.outputs, *x.shape)
    if x.size == 0:
        return eng.constant(np.zeros(shape, dtype=np.int64), 0)

    def steps(value: Any) -> Any:
        return cmp.compare_steps(eng.prep, eng.party_id, eng.key_share, value, want)

    return eng.interactive(steps, [x], shape, 0)


def ltz(x: SecretArray) -> SecretArray:
    """``[x < 0]`` (0/1 integers; ``x`` read as signed)."""
    return compare(x, cmp.Want(lt=True))[0]


def eqz(x: SecretArray) -> SecretArray:
    """``[x = 0]`` (0/1 integers)."""
    return compare(x, cmp.Want(lt=False, eq=True))[0]


def _secret_operand(a: Any, b: Any) -> SecretArray:
    if isinstance(a, SecretArray):
        return a
    if isinstance(b, SecretArray):
        return b
    raise ConfigError("a comparison needs at least one secret array")


def _diff(a: Any, b: Any) -> SecretArray:
    """``a - b`` as a secret array (one operand may be public)."""
    if isinstance(a, SecretArray):
        return a - b
    return (-_secret_operand(a, b)) + a


def less(a: Any, b: Any) -> SecretArray:
    """``[a < b]``."""
    return ltz(_diff(a, b))


def greater(a: Any, b: Any) -> SecretArray:
    """``[a > b]``."""
    return ltz(_diff(b, a))


def less_equal(a: Any, b: Any) -> SecretArray:
    """``[a <= b]``."""
    return 1 - ltz(_diff(b, a))


def greater_equal(a: Any, b: Any) -> SecretArray:
    """``[a >= b]``."""
    return 1 - ltz(_diff(a, b))


def equal(a: Any, b: Any) -> SecretArray:
    """``[a = b]``."""
    return eqz(_diff(a, b))


def not_equal(a: Any, b: Any) -> SecretArray:
    """``[a != b]``."""
    return 1 - eqz(_diff(a, b))


def sign(x: SecretArray) -> SecretArray:
    """-1, 0 or 1 (integers) as ``x`` is negative, zero or positive: ``1 - 2 [x < 0] - [x = 0]``."""
    both = compare(x, cmp.Want(lt=True, eq=True))
    return 1 - 2 * both[0] - both[1]


def absolute(x: SecretArray) -> SecretArray:
    """``|x|`` = ``x (1 - 2 [x < 0])`` (same kind as ``x``; ``-2^63`` stays itself)."""
    return x * (1 - 2 * ltz(x))


def relu(x: SecretArray) -> SecretArray:
    """``max(x, 0)`` = ``x (1 - [x < 0])`` (same kind as ``x``)."""
    return x * (1 - ltz(x))


def maximum(a: Any, b: Any) -> SecretArray:
    """Elementwise maximum (numpy broadcasting; one operand may be public)."""
    return where(greater_equal(a, b), a, b)


def minimum(a: Any, b: Any) -> SecretArray:
    """Elementwise minimum (numpy broadcasting; one operand may be public)."""
    return where(less_equal(a, b), a, b)


Track = Literal["none", "index", "one_hot"]


def _to_last(x: SecretArray, axis: int | None) -> SecretArray:
    if axis is None:
        return x.reshape(-1)
    bad = f"axis {axis} out of range for {x.ndim} dimensions"
    ax = check_int(axis, "axis", lo=-x.ndim, hi=x.ndim - 1, numpy=True, message=bad) % x.ndim
    order = [i for i in range(x.ndim) if i != ax] + [ax]
    return x.transpose(order) if order != list(range(x.ndim)) else x


def _tournament(x: SecretArray, axis: int | None, largest: bool, track: Track) -> tuple[SecretArray, Any]:
    """Pairwise knockout along ``axis`` (moved last): ``ceil(lg m)`` levels of one comparison each.

    At every level element ``2i`` (the lower index) meets ``2i + 1`` and wins ties, so the
    survivor is the first extreme element; an odd last element passes up unchanged. ``track``
    follows the winner's index (one secret integer per element; the first level is local) or
    its one-hot vector, kept as blocks of ``2^level`` positions (block ``i`` covers indices
    ``i 2^level ..``, zero-padded past the end): merging two blocks multiplies both by the
    comparison bit, ``m`` products per level.

    Returns:
        ``(extreme, tracked)`` with ``tracked`` ``None``, a secret index array or a secret
        (or public, when ``m == 1``) one-hot array.
    """
    if not isinstance(x, SecretArray):
        raise ConfigError("max/argmax need a secret array")
    vals = _to_last(x, axis)
    m = vals.shape[-1] if vals.ndim else 0
    if m == 0:
        raise ConfigError("max/argmax of an empty array")
    n = m
    index: Any = np.arange(m, dtype=np.int64)
    blocks: Any = np.ones((m, 1), dtype=np.int64)  # (..., blocks, block size)
    while m > 1:
        pairs = m // 2
        even, odd = slice(0, 2 * pairs, 2), slice(1, 2 * pairs, 2)
        a, b = vals[..., even], vals[..., odd]
        keep_a = greater_equal(a, b) if largest else less_equal(a, b)
        tail = slice(2 * pairs, m)
        vals = _join(where(keep_a, a, b), vals[..., tail], -1) if m % 2 else where(keep_a, a, b)
        if track == "index":
            won = where(keep_a, index[..., even], index[..., odd])
            index = _join(won, index[..., tail], -1) if m % 2 else won
        elif track == "one_hot":
            oa, ob = blocks[..., even, :], blocks[..., odd, :]
            won = where(keep_a.reshape(*keep_a.shape, 1), _join(oa, _zeros(ob), -1), _join(_zeros(oa), ob, -1))
            if m % 2:
                last = blocks[..., tail, :]
                won = _join(won, _join(last, _zeros(last), -1), -2)
            blocks = won
        m -= pairs
    best = vals[..., 0]
    if track == "index":
        return best, _broadcast(x, index[..., 0], best.shape)
    if track == "one_hot":
        return best, _broadcast(x, blocks[..., 0, :n], (*best.shape, n))
    return best, None


def _zeros(v: Any) -> np.ndarray:
    return np.zeros(v.shape[-2:] if isinstance(v, SecretArray) else np.shape(v), dtype=np.int64)


def _join(a: Any, b: Any, axis: int) -> Any:
    """Concatenate along ``axis`` (-1 or -2), broadcasting the leading axes; public parts stay
    public when both are, else become (trivially) shared."""
    if not isinstance(a, SecretArray) and not isinstance(b, SecretArray):
        lead = np.broadcast_shapes(np.shape(a)[:axis], np.shape(b)[:axis])
        parts = [np.broadcast_to(p, (*lead, *np.shape(p)[axis:])) for p in (a, b)]
        return np.concatenate(parts, axis=axis)
    eng = (a if isinstance(a, SecretArray) else b).engine
    items = [p if isinstance(p, SecretArray) else eng.constant(np.asarray(p, dtype=np.int64), 0) for p in (a, b)]
    lead = np.broadcast_shapes(*(p.shape[:axis] for p in items))
    items = [p if p.shape[:axis] == lead else p.broadcast_to((*lead, *p.shape[axis:])) for p in items]
    return concatenate(items, axis=axis)


def _broadcast(x: SecretArray, v: Any, shape: tuple[int, ...]) -> SecretArray:
    if isinstance(v, SecretArray):
        return v if v.shape == shape else v.broadcast_to(shape)
    return x.engine.constant(np.broadcast_to(np.asarray(v, dtype=np.int64), shape).copy(), 0)


def reduce_max(x: SecretArray, axis: int | None = None) -> SecretArray:
    """Maximum over ``axis`` (all elements when ``None``), numpy semantics."""
    return _tournament(x, axis, True, "none")[0]


def reduce_min(x: SecretArray, axis: int | None = None) -> SecretArray:
    """Minimum over ``axis`` (all elements when ``None``), numpy semantics."""
    return _tournament(x, axis, False, "none")[0]


def argmax(x: SecretArray, axis: int | None = None, *, one_hot: bool = False, with_value: bool = False) -> Any:
    """Index of the (first) maximum over ``axis`` (of the flattened array when ``None``).

    Args:
        x: the secret array.
        axis: the axis, or ``None``.
        one_hot: return a 0/1 vector along the last axis (length of the reduced axis) instead
            of an integer index.
        with_value: also return the maximum: ``(index, max)``.
    """
    best, idx = _tournament(x, axis, True, "one_hot" if one_hot else "index")
    return (idx, best) if with_value else idx


def argmin(x: SecretArray, axis: int | None = None, *, one_hot: bool = False, with_value: bool = False) -> Any:
    """Index of the (first) minimum over ``axis``; see :func:`argmax`."""
    best, idx = _tournament(x, axis, False, "one_hot" if one_hot else "index")
    return (idx, best) if with_value else idx
