"""Authenticated shares (SPDZ2k, k = 64, s = 64) and the local linear operations on them.

A value ``x`` of Z_2^64 is shared among ``n`` parties as ``[x]``: party ``i`` holds
``(x_i, m_i)`` in Z_2^128 with ``sum_i x_i = x' `` and ``sum_i m_i = alpha * x' mod 2^128`` for
some ``x' = x mod 2^64`` (the high 64 bits of ``x'`` are arbitrary), where the MAC key
``alpha = sum_i alpha_i`` is itself shared (``alpha_i`` uniform in Z_2^64, lifted). Only
``x mod 2^64`` is meaningful; the high bits give the MAC check its 64 bits of statistical
security (Cramer, Damgard, Escudero, Scholl, Xing, "SPDZ2k: Efficient MPC mod 2^k for
Dishonest Majority", CRYPTO 2018).

:class:`AuthShare` holds one party's ``(x_i, m_i)`` for an array of any shape as a single
:class:`~mpc.ring128.Z128` of shape ``(2, *shape)``: row 0 the value shares, row 1 the MAC
shares, so that every linear operation updates both with one vectorized call. Every function
here is local (no communication) and pure.

This is a hazmat-level module: an ``AuthShare`` reveals nothing by itself, but combining
shares outside the engine skips the MAC check. Applications use the engine's secret arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.ring128 import Z128

__all__ = [
    "AuthShare",
    "add",
    "sub",
    "neg",
    "add_public",
    "unit",
    "mul_public",
    "shl",
    "concatenate",
    "stack",
    "flat_concat",
    "split_flat",
]


_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, eq=False)
class AuthShare:
    """This party's share of an authenticated sharing ``[x]`` of an array ``x``.

    Attributes:
        data: ``Z128`` of shape ``(2, *shape)``: ``data[0]`` the value share ``x_i``,
            ``data[1]`` the MAC share ``m_i``.
    """

    data: Z128

    def __post_init__(self) -> None:
        if not isinstance(self.data, Z128) or self.data.ndim < 1 or self.data.shape[0] != 2:
            raise ConfigError("an AuthShare holds a Z128 of shape (2, *shape)")

    @staticmethod
    def _of(data: Z128) -> AuthShare:
        """Wrap ``data`` without validation: for results of this module's operations, whose
        ``(2, *shape)`` layout holds by construction (internal; the public constructor checks)."""
        out = _new(AuthShare)
        _set(out, "data", data)
        return out

    @classmethod
    def from_parts(cls, share: Z128, mac: Z128) -> AuthShare:
        """Pair a value share and a MAC share of the same shape."""
        if share.shape != mac.shape:
            raise ConfigError(f"share shape {share.shape} differs from MAC shape {mac.shape}")
        return cls(r128.stack([share, mac]))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the shared array."""
        return self.data.shape[1:]

    @property
    def ndim(self) -> int:
        """Number of dimensions of the shared array."""
        return self.data.ndim - 1

    @property
    def size(self) -> int:
        """Number of shared elements."""
        return self.data.size // 2

    @property
    def share(self) -> Z128:
        """The value shares ``x_i``."""
        return self.data[0]

    @property
    def mac(self) -> Z128:
        """The MAC shares ``m_i``."""
        return self.data[1]

    # -- structure (numpy semantics on the shared array) ------------------------------------

    def __getitem__(self, index: Any) -> AuthShare:
        idx = index if isinstance(index, tuple) else (index,)
        data = self.data[(slice(None), *idx)]
        if data.shape[:1] != (2,):  # e.g. advanced indices around a slice move their axis first
            raise ConfigError("this index would mix the share and MAC rows")
        return _of(data)

    def reshape(self, *shape: Any) -> AuthShare:
        """The shared array reshaped (numpy semantics, ``-1`` allowed)."""
        target = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _of(self.data.reshape(2, *target))

    def transpose(self, axes: Sequence[int] | None = None) -> AuthShare:
        """Permuted axes of the shared array (reversed when ``axes`` is ``None``)."""
        nd = self.ndim
        order = tuple(range(nd))[::-1] if axes is None else tuple(int(a) % nd for a in axes) if nd else ()
        if sorted(order) != list(range(nd)):
            raise ConfigError(f"invalid axes {axes} for {nd} dimensions")
        return _of(self.data.transpose(0, *(a + 1 for a in order)))

    def broadcast_to(self, shape: tuple[int, ...]) -> AuthShare:
        """A read-only view broadcast to ``shape`` (numpy rules: new axes in front)."""
        target = tuple(shape)
        try:
            np.broadcast_shapes(self.shape, target)
        except ValueError:
            raise ConfigError(f"cannot broadcast {self.shape} to {target}") from None
        return _of(_aligned(self.data, len(target)).broadcast_to((2, *target)))

    def sum(self, axis: int | tuple[int, ...] | None = None) -> AuthShare:
        """Sum over ``axis`` of the shared array (all axes when ``None``)."""
        nd = self.ndim
        if axis is None:
            axes: tuple[int, ...] = tuple(range(1, nd + 1))
        else:
            raw = axis if isinstance(axis, tuple) else (axis,)
            if any(not -nd <= a < nd for a in raw):
                raise ConfigError(f"axis {axis} out of range for {nd} dimensions")
            axes = tuple(sorted({a % nd + 1 for a in raw}))
        if not axes:
            return _of(self.data.copy())
        return _of(r128.sum(self.data, axis=axes))

    def copy(self) -> AuthShare:
        """A contiguous, writable copy."""
        return _of(self.data.copy())


# -- local linear operations -------------------------------------------------------------------

_of = AuthShare._of


def _aligned(data: Z128, ndim: int) -> Z128:
    """``data`` (shape ``(2, *s)``) with unit axes after the pair axis up to ``ndim`` share dims."""
    missing = ndim - (data.ndim - 1)
    if missing <= 0:
        return data
    return data.reshape(2, *([1] * missing), *data.shape[1:])


def _pair_operands(a: AuthShare, b: AuthShare) -> tuple[Z128, Z128]:
    if a.data.shape == b.data.shape:
        return a.data, b.data
    nd = max(a.ndim, b.ndim)
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ConfigError(f"shapes {a.shape} and {b.shape} do not broadcast") from None
    return _aligned(a.data, nd), _aligned(b.data, nd)


def add(a: AuthShare, b: AuthShare) -> AuthShare:
    """``[a + b]`` (numpy broadcasting)."""
    x, y = _pair_operands(a, b)
    return _of(r128.add(x, y))


def sub(a: AuthShare, b: AuthShare) -> AuthShare:
    """``[a - b]`` (numpy broadcasting)."""
    x, y = _pair_operands(a, b)
    return _of(r128.sub(x, y))


def neg(a: AuthShare) -> AuthShare:
    """``[-a]``."""
    return _of(r128.neg(a.data))


def _public_u64(c: Any) -> np.ndarray:
    arr = np.asarray(c)
    if arr.dtype != np.uint64:
        raise ConfigError(f"public ring values must be uint64 (Z_2^64), got {arr.dtype}")
    return arr


def add_public(a: AuthShare, c: Any, party_id: int, key_share: np.ndarray) -> AuthShare:
    """``[a + c]`` for a public ``c`` in Z_2^64 (uint64, broadcasting).

    Party 0 adds ``c`` to its value share; every party adds ``alpha_i * c`` to its MAC share.

    Args:
        a: the shared operand.
        c: public values (uint64).
        party_id: this party's id.
        key_share: this party's MAC key share ``alpha_i`` (uint64, 0-d).
    """
    cu = _public_u64(c)
    if cu.ndim == 0:  # one public value: its (value, MAC) pair in Python integers
        delta = _scalar_pair(int(cu), party_id, key_share)
        return _of(r128.add(a.data, delta.reshape(2, *([1] * a.ndim))))
    nd = max(a.ndim, cu.ndim)
    mac = r128.mul_wide_u64(cu, np.asarray(key_share, dtype=np.uint64))  # alpha_i * c < 2^128
    lo = np.empty((2, *cu.shape), dtype=np.uint64)
    hi = np.empty((2, *cu.shape), dtype=np.uint64)
    lo[0] = cu if party_id == 0 else 0
    lo[1] = mac.lo
    hi[0] = 0
    hi[1] = mac.hi
    return _of(r128.add(_aligned(a.data, nd), _aligned(Z128(lo, hi), nd)))


def _scalar_pair(c: int, party_id: int, key_share: np.ndarray) -> Z128:
    """``(c at party 0 else 0, alpha_i * c mod 2^128)`` for a public ``c`` in [0, 2^64): shape ``(2,)``."""
    mac = c * int(np.asarray(key_share, dtype=np.uint64).reshape(()))  # below 2^128
    return Z128(
        np.array([c if party_id == 0 else 0, mac & _MASK64], dtype=np.uint64),
        np.array([0, mac >> 64], dtype=np.uint64),
    )


def unit(party_id: int, key_share: np.ndarray) -> AuthShare:
    """``[1]``, the public one as a (trivial) authenticated sharing of shape ``()``."""
    return _of(_scalar_pair(1, party_id, key_share))


_MASK64 = (1 << 64) - 1


def mul_public(a: AuthShare, c: Any) -> AuthShare:
    """``[a * c]`` for a public ``c`` in Z_2^64 (uint64, elementwise, broadcasting)."""
    cu = _public_u64(c)
    nd = max(a.ndim, cu.ndim)
    return _of(r128.mul_u64(_aligned(a.data, nd), cu))


def shl(a: AuthShare, bits: int) -> AuthShare:
    """``[a * 2^bits]`` for ``0 <= bits < 128`` (bits beyond 64 only move the MAC-only bits)."""
    return _of(r128.shl(a.data, bits))


def concatenate(parts: Sequence[AuthShare], axis: int = 0) -> AuthShare:
    """Join shared arrays along an existing axis (numpy semantics)."""
    if not parts:
        raise ConfigError("concatenate of no arrays")
    nd = parts[0].ndim
    if nd == 0 or not -nd <= axis < nd:
        raise ConfigError(f"axis {axis} out of range for {nd} dimensions")
    return _of(r128.concatenate([p.data for p in parts], axis=axis % nd + 1))


def stack(parts: Sequence[AuthShare], axis: int = 0) -> AuthShare:
    """Join shared arrays along a new axis (numpy semantics)."""
    if not parts:
        raise ConfigError("stack of no arrays")
    nd = parts[0].ndim + 1
    if not -nd <= axis < nd:
        raise ConfigError(f"axis {axis} out of range for {nd} dimensions")
    return _of(r128.stack([p.data for p in parts], axis=axis % nd + 1))


def flat_concat(parts: Sequence[AuthShare]) -> AuthShare:
    """All elements of ``parts`` as one flat shared vector (for batching opens)."""
    if not parts:
        return _of(r128.zeros((2, 0)))
    return _of(r128.concatenate([p.data.reshape(2, -1) for p in parts], axis=1))


def split_flat(flat: Z128, shapes: Sequence[tuple[int, ...]]) -> list[Z128]:
    """Cut a flat vector back into arrays of ``shapes`` (inverse of flattening and joining)."""
    out = []
    pos = 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[pos : pos + size].reshape(shape))
        pos += size
    if pos != flat.size:
        raise ConfigError("flat vector length does not match the shapes")
    return out
