"""The fused ring-OT derive step (pure) against its unfused definition with Python integers."""

from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.ot import ringot
from protocols.ot.crhash import CRHash
from protocols.ot.extension import hash_pairs, hash_rows

DOMAIN = 3
M64, M128 = 1 << 64, 1 << 128


def elements(a: np.ndarray, z128: bool) -> list[int]:
    """Flat Python ints of uint64 words (Z_2^64) or [lo, hi] limb pairs (Z_2^128)."""
    if not z128:
        return [int(v) for v in a.reshape(-1)]
    return [int(lo) | (int(hi) << 64) for lo, hi in a.reshape(-1, 2)]


def reference(q: np.ndarray, delta: np.ndarray, first: int, x: np.ndarray, c: np.ndarray, z128: bool) -> tuple[list[int], list[int], list[int]]:
    """``s = H(q)``, ``tau = s + x - H(q ^ Delta)``, ``v = H(q ^ c Delta) + c tau`` by definition."""
    n = q.shape[0]
    per = x.nbytes // n
    h0, h1 = hash_pairs(q, delta, first, per, DOMAIN)
    rows_t = np.where(c[:, None] == 1, q ^ delta[None, :], q)
    ht = hash_rows(rows_t, first, per, DOMAIN)
    mod = M128 if z128 else M64
    s = elements(np.ascontiguousarray(h0).view(np.uint64), z128)
    g1 = elements(np.ascontiguousarray(h1).view(np.uint64), z128)
    gt = elements(np.ascontiguousarray(ht).view(np.uint64), z128)
    xs = elements(x, z128)
    per_row = len(xs) // n
    tau = [(a + b - d) % mod for a, b, d in zip(s, xs, g1, strict=True)]
    cc = np.repeat(c, per_row)
    v = [(g + int(ci) * t) % mod for g, ci, t in zip(gt, cc, tau, strict=True)]
    return s, tau, v


@pytest.mark.parametrize(
    "n, shape, z128",
    [
        (1000, (2, 2), True),  # the multiplication shape
        (9000, (1, 2), True),  # several chunks, a partial last one
        (3, (700, 2), True),  # wide rows: a loop over rows
        (40, (5,), False),  # Z_2^64 with an odd width (a truncated last block)
        (2500, (3,), False),
        (1, (1,), False),
    ],
)
def test_fused_derive_matches_definition(prg: PRG, n: int, shape: tuple[int, ...], z128: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ringot, "_CHUNK_BYTES", 1 << 12)  # many small chunks
    q = prg.buffer(16 * n).reshape(n, 16)
    delta = prg.buffer(16).copy()
    x = prg.uint64((n, *shape))
    # extreme words too: carries and borrows across the limbs
    x.reshape(-1)[: min(x.size, 64)] = np.uint64(M64 - 1)
    c = prg.bits(n).astype(np.uint8)
    first = (1 << 40) + 17
    s, tau = ringot.ring_send(q, delta, first, x, z128, DOMAIN)
    rows_t = np.where(c[:, None] == 1, q ^ delta[None, :], q)
    v = ringot.ring_recv(rows_t, first, c, tau, z128, DOMAIN)
    assert s.shape == tau.shape == v.shape == x.shape and v.dtype == np.uint64
    es, etau, ev = reference(q, delta, first, x, c, z128)
    assert elements(s, z128) == es
    assert elements(tau, z128) == etau
    assert elements(v, z128) == ev


def test_permute_into_matches_permute(prg: PRG) -> None:
    h = CRHash()
    x = prg.buffer(16 * 50).reshape(50, 16)
    out = np.empty(16 * 50 + 16, dtype=np.uint8)
    got = h.permute_into(x.view(np.uint64), out)
    np.testing.assert_array_equal(got.reshape(50, 16), h.permute(x))
    with pytest.raises(ConfigError):
        h.permute_into(x, np.empty(16 * 50, dtype=np.uint8))  # no slack block
    with pytest.raises(ConfigError):
        h.permute_into(x[:, :8], out)  # not whole blocks
