"""Exact set operations on rows of bytes (``(n, w)`` uint8 arrays): lookup, repeats, intersection.

Group elements, OPRF values and digests are pseudo-random, so their first 8 bytes (as a
big-endian uint64) almost always tell rows apart; numpy sorts and searches uint64 arrays tens of
times faster than byte strings (measured with numpy 2.4: ``np.isin`` / ``np.unique`` on 10^6
32-byte strings take about 2 s, a uint64 ``argsort`` 0.02 s). Every function here first works on
those prefixes, then confirms candidates on the full rows, and falls back to exact byte-string
operations when two distinct rows share a prefix (probability about ``n^2 / 2^64``), so results
are always exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["find_rows", "first_occurrences", "has_repeats", "intersect_rows", "byte_order"]


def _prefix(rows: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each row as big-endian uint64 (zero-padded for narrow rows)."""
    if rows.shape[1] >= 8:
        return np.ascontiguousarray(rows[:, :8]).view(">u8").ravel()
    padded = np.zeros((rows.shape[0], 8), dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    return padded.view(">u8").ravel()


def _strings(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=np.uint8).view(f"S{rows.shape[1]}").ravel()


def byte_order(rows: np.ndarray) -> np.ndarray:
    """Indices that sort the rows lexicographically by their bytes (the same at every party)."""
    return np.argsort(_strings(rows), kind="stable")


def find_rows(needles: np.ndarray, haystack: np.ndarray) -> np.ndarray:
    """For each row of ``needles``, the index of an equal row of ``haystack``, or -1.

    Args:
        needles: ``(a, w)`` uint8.
        haystack: ``(b, w)`` uint8 (if it repeats a row, one of the copies is returned).

    Returns:
        ``(a,)`` int64.
    """
    out = np.full(needles.shape[0], -1, dtype=np.int64)
    if needles.shape[0] == 0 or haystack.shape[0] == 0:
        return out
    hp = _prefix(haystack)
    order = np.argsort(hp, kind="stable")
    sp = hp[order]
    if (sp[1:] == sp[:-1]).any():
        return _find_exact(needles, haystack)
    np_ = _prefix(needles)
    pos = np.minimum(np.searchsorted(sp, np_), sp.shape[0] - 1)
    cand = np.flatnonzero(sp[pos] == np_)
    at = order[pos[cand]]
    same = np.all(needles[cand] == haystack[at], axis=1)
    out[cand[same]] = at[same]
    return out


def _find_exact(needles: np.ndarray, haystack: np.ndarray) -> np.ndarray:
    keys = _strings(haystack)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    want = _strings(needles)
    pos = np.minimum(np.searchsorted(sk, want), sk.shape[0] - 1)
    return np.where(sk[pos] == want, order[pos], -1).astype(np.int64)


def first_occurrences(rows: np.ndarray) -> np.ndarray:
    """Ascending indices of the first occurrence of each distinct row."""
    n = rows.shape[0]
    if n < 2:
        return np.arange(n, dtype=np.int64)
    p = _prefix(rows)
    order = np.argsort(p, kind="stable")
    sp = p[order]
    same = np.flatnonzero(sp[1:] == sp[:-1])
    if same.size == 0:
        return np.arange(n, dtype=np.int64)
    involved = np.sort(np.concatenate([order[same], order[same + 1]]))
    involved = involved[np.concatenate(([True], involved[1:] != involved[:-1]))]
    seen: set[bytes] = set()
    drop = []
    # One step per row whose prefix is shared with another row: only repeated rows (and the
    # rare prefix collisions) get here; the rest was settled by the vectorized sort.
    for i in involved.tolist():
        key = rows[i].tobytes()
        if key in seen:
            drop.append(i)
        else:
            seen.add(key)
    keep = np.ones(n, dtype=bool)
    keep[drop] = False
    return np.flatnonzero(keep).astype(np.int64)


def has_repeats(rows: np.ndarray) -> bool:
    """Whether some row occurs twice."""
    return bool(first_occurrences(rows).shape[0] != rows.shape[0])


def intersect_rows(sets: list[np.ndarray]) -> np.ndarray:
    """Rows present in every set (each of distinct rows), sorted by their bytes."""
    common = sets[0]
    for other in sets[1:]:
        common = common[find_rows(common, other) >= 0]
    return np.ascontiguousarray(common[byte_order(common)])
