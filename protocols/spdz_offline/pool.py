"""FIFO pools of produced material, one per resource key, with per-job reservations.

A pool holds batches of *columns* (an :class:`AuthShare` of shape ``(2, N, ...)`` per shared
component, a uint64 array ``(N, ...)`` for an owner's mask values, ``None`` where a party has
none) and hands out their leading elements exactly once: :meth:`Pool.take` removes what it
returns. Every party's pools receive the same batches in the same order and are consumed in
the same order (SPMD), so the material stays correlated by position.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from mpc import ring128 as r128
from mpc.errors import PreprocessingExhausted
from protocols.spdz.shares import AuthShare

__all__ = ["Column", "Pool"]

Column = Union[AuthShare, np.ndarray, None]


def _head(c: Column, n: int) -> Column:
    if c is None:
        return None
    return AuthShare(c.data[:, :n]) if isinstance(c, AuthShare) else c[:n]


def _tail(c: Column, n: int) -> Column:
    if c is None:
        return None
    return AuthShare(c.data[:, n:]) if isinstance(c, AuthShare) else c[n:]


def _join(parts: list[Column]) -> Column:
    if parts[0] is None:
        return None
    if isinstance(parts[0], AuthShare):
        shares = [p for p in parts if isinstance(p, AuthShare)]
        return AuthShare(r128.concatenate([p.data for p in shares], axis=1))
    return np.concatenate([p for p in parts if isinstance(p, np.ndarray)])


def _length(c: Column) -> int:
    if isinstance(c, AuthShare):
        return int(c.data.shape[1])
    return int(c.shape[0]) if c is not None else -1


class Pool:
    """Batches of one resource kind, consumed front first."""

    __slots__ = ("key", "_batches", "size", "reserved")

    def __init__(self, key: str) -> None:
        self.key = key
        self._batches: list[tuple[Column, ...]] = []
        self.size = 0
        self.reserved = 0

    def add(self, columns: tuple[Column, ...]) -> None:
        """Append a batch (every column with the same number of elements)."""
        lengths = {_length(c) for c in columns if c is not None}
        if len(lengths) != 1:
            raise PreprocessingExhausted("internal: a batch with columns of different lengths")
        count = lengths.pop()
        if count:
            self._batches.append(columns)
            self.size += count

    def take(self, n: int) -> tuple[Column, ...]:
        """Remove and return the first ``n`` elements (reserved ones first).

        Raises:
            PreprocessingExhausted: fewer than ``n`` are available.
        """
        if n > self.size:
            raise PreprocessingExhausted(f"preprocessing exhausted: {self.key} ({n} needed, {self.size} left)")
        parts: list[tuple[Column, ...]] = []
        need = n
        while need > 0:
            batch = self._batches[0]
            have = max(_length(c) for c in batch)
            if have <= need:
                parts.append(self._batches.pop(0))
                need -= have
            else:
                parts.append(tuple(_head(c, need) for c in batch))
                self._batches[0] = tuple(_tail(c, need) for c in batch)
                need = 0
        self.size -= n
        self.reserved = max(0, self.reserved - n)
        if not parts:
            return ()
        return tuple(_join([p[i] for p in parts]) for i in range(len(parts[0])))

    def drain(self) -> list[tuple[Column, ...]]:
        """Remove and return every batch (for persisting)."""
        out, self._batches, self.size, self.reserved = self._batches, [], 0, 0
        return out
