"""Scale-aware fixed-point steps on the engine's secret arrays (fewer rounds than the defaults).

The engine truncates every fixed-point product at once (one round after the Beaver round). The
ML protocols save rounds by keeping a product *untruncated* while it is only compared or
rescaled: such a value is held as an integer secret array (``frac_bits == 0``) whose ring
element is ``v * 2^s`` for a scale ``s`` the caller tracks (``2f`` after a fixed-point product).
Comparisons of it with public thresholds ``t * 2^s`` are exact (the engine's LTZ reads the
element as a signed 64-bit integer), and one truncation by ``s - f`` (or more, to fold a
division by a power of two in) brings it back to fixed point. Ranges: a scaled value must stay
below ``2^62`` as an integer, i.e. ``|v| < 2^(62 - s)`` (``2^30`` at ``s = 2f = 32``,
``2^14`` at ``s = 3f = 48``).

Every function only records nodes through the engine's public node API
(:meth:`~protocols.spdz.engine.Engine.linear`, :meth:`~protocols.spdz.engine.Engine.interactive`,
:meth:`~protocols.spdz.engine.Engine.bilinear_gen`, :meth:`~protocols.spdz.engine.Engine.truncate_gen`):
the scheduling, batching per level and MAC checks are the engine's.
"""

from __future__ import annotations

import numpy as np

from mpc.errors import ConfigError
from protocols.spdz.array import SecretArray

__all__ = ["reinterpret", "raw_product", "truncate", "scale_bits"]


def scale_bits(x: SecretArray) -> int:
    """The engine's fractional bits ``f`` for ``x``."""
    return x.engine.frac_bits


def reinterpret(x: SecretArray, frac_bits: int) -> SecretArray:
    """The same shares read with ``frac_bits`` fractional bits (local; no value changes)."""
    if frac_bits not in (0, x.engine.frac_bits):
        raise ConfigError("frac_bits must be 0 or the engine's")
    if frac_bits == x.frac_bits:
        return x
    shape = x.shape
    return x.engine.linear(lambda a: a, [x], lambda: shape, frac_bits)


def raw_product(op: str, x: SecretArray, y: SecretArray) -> SecretArray:
    """``x * y`` (``op="mul"``) or ``x @ y`` (``op="matmul"``) by Beaver, *not* truncated.

    One round. The result is an integer array holding the exact product of the ring elements:
    ``v * 2^(sx + sy)`` for operands at scales ``sx``, ``sy``.
    """
    if op == "mul":
        shape = tuple(np.broadcast_shapes(x.shape, y.shape))
    elif op == "matmul":
        if x.ndim not in (1, 2) or y.ndim not in (1, 2):
            raise ConfigError("matmul supports 1-d and 2-d operands")
        shape = np.matmul(np.broadcast_to(np.uint8(0), x.shape), np.broadcast_to(np.uint8(0), y.shape)).shape
    else:
        raise ConfigError(f"unknown product {op!r}")
    eng = x.engine
    return eng.interactive(eng.bilinear_gen(op, False), [x, y], tuple(shape), 0)


def truncate(x: SecretArray, bits: int) -> SecretArray:
    """``x / 2^bits`` (probabilistic rounding, within one unit), read as fixed point (``f`` bits).

    One round, one truncation pair per element (keyed by ``bits``). ``x`` must be below
    ``2^62`` in magnitude as a ring integer.
    """
    eng = x.engine
    return eng.interactive(eng.truncate_gen(bits), [x], x.shape, eng.frac_bits)
