"""Fixed-point functions of secret arrays: sigmoid (two methods), exp, reciprocal and division.

Everything is composed of the engine's operations (Beaver products, truncations, the exact
comparisons of :mod:`protocols.spdz.ordering`), recorded lazily, so the functions of one
program level share their rounds. Results are fixed point (the engine's ``f``, 16 by default);
integer operands are promoted. The error figures below are for ``f = 16`` and include the
fixed-point rounding (each truncation is off by less than one unit ``2^-f``); the tests check
them against numpy.

``sigmoid(x, method="clip")`` — ``clip(x / 4 + 1/2, 0, 1)``, the approximation MPyC's logistic
  regression demo uses: two comparisons (``x >= -2``, ``x >= 2``) and two products; 7 rounds;
  per element 2 LTZ (:func:`protocols.spdz.compare.cost`), 2 triples, 1 truncation pair. It is the line
  through ``(0, 1/2)`` with the slope of the sigmoid at 0, not an approximation of the
  function's values: ``|clip - sigmoid| <= 0.1193`` (the gap is largest at ``|x| = 2``).

``sigmoid(x, method="piecewise")`` (default) — degree-7 polynomials fitted (Chebyshev, least
  squares, rounded to monomial coefficients in ``f`` bits) on ``[-2, 2]`` in ``u = x / 2`` and
  on ``[2, 10]`` in ``u = (x - 6) / 4``, the mirror image ``1 - p(-x)`` on ``[-10, -2]``, and the
  constants 0 and 1 beyond ``-10`` and ``10``. Four comparisons (``x >= -10, -2, 2, 10``, one
  batch) run in parallel with the polynomials (the powers ``u^2 .. u^7`` of all three
  variables at once, 3 levels); then one product per comparison selects the segment. 9 rounds;
  per element 4 LTZ, 22 triples, 24 truncation pairs. Absolute error
  ``<= 2.5e-4`` for every real ``x`` in the fixed-point range (fit ``<= 6e-5``, tail
  ``sigmoid(-10) = 4.5e-5``, the rest fixed-point rounding).

``exp(x, bound=16)`` — for ``|x| <= bound`` (a power of two, at most 16):
  ``exp(x) = exp(x / bound)^bound``, the inner exp a degree-7 polynomial on ``[-1, 1]`` (fit
  error ``2.1e-7``), then ``log2(bound)`` squarings. ``8 + 2 log2(bound)`` rounds (16 for the
  default); per element ``6 + log2(bound)`` triples and ``8 + log2(bound)`` truncation pairs.
  Relative error ``<= bound * 2^-15`` (``5e-4`` at 16: the rounding of ``x / bound`` is
  amplified ``bound``-fold by the squarings) plus an absolute ``3 * 2^-16``. Outside
  ``[-bound, bound]`` the result is wrong (nothing checks the range in MPC).

``reciprocal(x)`` / ``divide(a, b)`` — for ``2^-8 <= x < 2^22`` (positive; the documented
  range): the comparisons ``[x >= 2^j]`` for ``j = -7 .. 21`` (29 in one batch) give the scale
  ``s = 2^-(e+1)`` with ``e = floor(log2 x)`` as a linear function of the comparison bits, so
  ``z = x s`` lies in ``[1/2, 1)`` (exactly: ``2^22 s`` is an integer, and ``x 2^22 s`` is
  truncated by 22 bits); three Newton steps ``y <- y (2 - z y)`` from ``y0 = 2.9142 - 2 z``
  (error below ``0.086`` on ``[1/2, 1)``, ``1e-8`` after three steps) give ``1 / z``, and
  ``1 / x = s y`` (``y 2^22 s`` truncated by 22 bits). 22 rounds; per element 29 LTZ,
  8 triples, 6 truncation pairs for ``f`` and 2 for 22 bits. Absolute error
  ``<= 2^-15 + 2^-13 / x`` (the tests check it; the relative error of ``1 / x`` for small ``x``
  is that of ``y``, about ``2^-16``); outside the range the result is wrong.

Security: the engine's (active, dishonest majority, abort; :mod:`protocols.spdz.engine`): the
functions only compose its operations, so nothing but the public shapes and parameters
(method, bound) leaks. Papers: the comparisons of :mod:`protocols.spdz.compare`; Newton's
reciprocal with a normalizing scale as in Catrina and Saxena (FC 2010); the polynomial fits
are ours (Chebyshev least squares, coefficients in this module).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mpc.errors import ConfigError
from protocols.spdz import compare as cmp
from protocols.spdz import ordering
from protocols.spdz.array import SecretArray, _maybe_truncate, stack

__all__ = [
    "SIGMOID_CENTER",
    "SIGMOID_SIDE",
    "EXP_UNIT",
    "sigmoid",
    "exp",
    "polyval",
    "reciprocal",
    "divide",
]

SIGMOID_CENTER = (0.5, 0.4998371482801752, 0.0, -0.16436806281604632, 0.0, 0.05755090099673049, 0.0, -0.012237831792999485)
"""sigmoid(2u) on u in [-1, 1], monomial coefficients (degree 7; the even ones are 0 by symmetry)."""

SIGMOID_SIDE = (
    0.9975092321847249,
    0.009975624134383486,
    -0.019134179793437036,
    0.024552718119876294,
    -0.02727596484514368,
    0.023876072155543566,
    -0.01075122962296194,
    0.0011893132114230546,
)
"""sigmoid(6 + 4u) on u in [-1, 1] (x in [2, 10]), monomial coefficients, degree 7."""

EXP_UNIT = (
    0.9999998012872033,
    0.9999999009212275,
    0.5000063485413799,
    0.16666798581912057,
    0.04163500804562165,
    0.008328595576791853,
    0.0014392775259924283,
    0.00020470028695541878,
)
"""exp(u) on u in [-1, 1], monomial coefficients, degree 7 (Chebyshev least squares)."""

# The coefficients are constants, not computed at run time: every party must use bit-identical
# public values, which a floating-point fit on different machines would not guarantee.


def _fixed(x: SecretArray) -> SecretArray:
    if not isinstance(x, SecretArray):
        raise ConfigError("expected a secret array")
    return x if x.is_fixed else x * 1.0


def _powers(u: SecretArray, degree: int) -> list[SecretArray]:
    """``[1 (unused), u, u^2, .., u^degree]`` in ``ceil(lg degree)`` product levels.

    ``u^k = u^a u^(k-a)`` with ``a`` the largest power of two below ``k``: both factors are
    ready one level earlier, so every power of a level is computed in the same round.
    """
    pw: list[Any] = [None, u]
    for k in range(2, degree + 1):
        a = 1 << (k.bit_length() - 1)
        a = a if a < k else a >> 1
        pw.append(pw[a] * pw[k - a])
    return pw


def polyval(u: SecretArray, coeffs: Sequence[Any]) -> SecretArray:
    """``sum_k c_k u^k`` for public coefficients (numbers, or arrays broadcasting with ``u``).

    The terms are summed with ``2f`` fractional bits and truncated once, so the rounding is one
    unit, plus each power's. Best for ``|u| <= 1`` (coefficient rounding ``2^-(f+1)`` per term
    is then not amplified).
    """
    x = _fixed(u)
    eng = x.engine
    f = eng.frac_bits
    pw = _powers(x, len(coeffs) - 1)
    total: Any = None
    for k, c in enumerate(coeffs):
        ck = np.rint(np.asarray(c, dtype=np.float64) * float(1 << f)).astype(np.int64)
        if k == 0 or not np.any(ck):
            continue
        term = pw[k] * ck  # integer multiplier: no truncation, the term has 2f bits in f's place
        total = term if total is None else total + term
    c0 = np.asarray(coeffs[0], dtype=np.float64)
    if total is None:
        return eng.constant(np.broadcast_to(c0, x.shape).copy()) if x.shape else eng.constant(float(c0))
    shape = total.shape
    wide = eng.linear(lambda a: a, [total], lambda: shape, 2 * f)  # the same shares, read with 2f bits
    return _maybe_truncate(wide) + c0


def sigmoid(x: SecretArray, method: str = "piecewise") -> SecretArray:
    """The logistic function ``1 / (1 + e^-x)`` (see the module docstring for the methods).

    Args:
        x: a secret array (fixed point, or integers promoted).
        method: ``"piecewise"`` (accurate, default) or ``"clip"`` (cheap, coarse).

    Raises:
        ConfigError: an unknown method.
    """
    x = _fixed(x)
    if method == "clip":
        below, above = _at_least(x, [-2.0, 2.0])
        y = x * 0.25 + 0.5
        return below * y + above * (1.0 - y)  # 0 below -2, y between, 1 above 2
    if method != "piecewise":
        raise ConfigError(f"unknown sigmoid method {method!r}")
    bits = _at_least(x, [-10.0, -2.0, 2.0, 10.0])
    u = stack([x * 0.5, x * 0.25 - 1.5, x * -0.25 - 1.5])  # center, right side, mirrored left
    coeffs = [np.array([c, s, s]).reshape(3, *([1] * x.ndim)) for c, s in zip(SIGMOID_CENTER, SIGMOID_SIDE)]
    p = polyval(u, coeffs)
    center, right, left = p[0], p[1], 1.0 - p[2]
    # 0 below -10; then left, center, right; 1 from 10: sum of b_i (p_i - p_{i-1})
    steps = stack([left, center - left, right - center, 1.0 - right])
    return (stack(bits) * steps).sum(axis=0)


def _at_least(x: SecretArray, thresholds: list[float]) -> list[SecretArray]:
    """``[x >= t]`` for every public ``t``, as one batched comparison of a stacked array."""
    diffs = stack([x - t for t in thresholds])
    lt = ordering.compare(diffs, cmp.Want(lt=True))[0]
    return [1 - lt[i] for i in range(len(thresholds))]


def exp(x: SecretArray, bound: float = 16.0) -> SecretArray:
    """``e^x`` for ``|x| <= bound`` (see the module docstring).

    Args:
        x: a secret array (fixed point, or integers promoted).
        bound: a power of two in ``[1, 16]``: the range of ``x`` the result is right on.

    Raises:
        ConfigError: ``bound`` is not a power of two in ``[1, 16]``.
    """
    if bound not in (1, 2, 4, 8, 16):
        raise ConfigError("exp bound must be 1, 2, 4, 8 or 16 (e^16 is near the fixed-point product limit)")
    squarings = int(bound).bit_length() - 1
    y = polyval(_fixed(x) * (1.0 / bound), EXP_UNIT)
    for _ in range(squarings):
        y = y * y
    return y


RECIPROCAL_MIN_EXP = -8
"""``reciprocal`` is right for ``x >= 2^RECIPROCAL_MIN_EXP``."""

RECIPROCAL_MAX_EXP = 22
"""``reciprocal`` is right for ``x < 2^RECIPROCAL_MAX_EXP``."""


def reciprocal(x: SecretArray) -> SecretArray:
    """``1 / x`` for ``2^-8 <= x < 2^22`` (see the module docstring; wrong outside)."""
    x = _fixed(x)
    eng = x.engine
    exps = list(range(RECIPROCAL_MIN_EXP + 1, RECIPROCAL_MAX_EXP))  # [x >= 2^j]
    bits = _at_least(x, [2.0**j for j in exps])
    # e = floor(log2 x) in [-8, 21]; s = 2^-(e+1). With b_j = [x >= 2^j] (decreasing in j),
    # s = 2^(-min_e - 1) + sum_j b_j (2^(-j-1) - 2^(-j)) = 2^7 - sum_j b_j 2^(-j-1).
    # As an integer multiplier of x scaled by 2^(22): S = 2^22 s is an integer for e <= 21.
    big = RECIPROCAL_MAX_EXP
    weights = np.array([1 << (big - j - 1) for j in exps], dtype=np.int64).reshape(-1, *([1] * x.ndim))
    scale_int = (stack(bits) * weights).sum(axis=0) * -1 + (1 << (big - RECIPROCAL_MIN_EXP - 1))  # 2^22 s
    z = _shift_down(x * scale_int, big, eng)  # x s in [1/2, 1), fixed point
    y = 2.9142 - 2 * z
    for _ in range(3):
        y = y * (2.0 - z * y)
    return _shift_down(y * scale_int, big, eng)


def _shift_down(v: SecretArray, bits: int, eng: Any) -> SecretArray:
    """``v / 2^bits`` (probabilistic rounding, one round): a truncation by ``bits``."""
    return eng.interactive(eng.truncate_gen(bits), [v], v.shape, v.frac_bits)


def divide(a: SecretArray, b: SecretArray) -> SecretArray:
    """``a / b`` for a secret ``b`` with ``2^-8 <= b < 2^22``: ``a * reciprocal(b)``."""
    return _fixed(a) * reciprocal(b)
