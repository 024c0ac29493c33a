"""The online round functions and the MAC check, simulated for all parties without a network."""

from __future__ import annotations

import numpy as np
import pytest
from spdz_testkit import M64, M128, dealers, mac_key, open_checked

from mpc import ring128 as r128
from mpc.errors import ConfigError, MacCheckFailure
from mpc.prg import PRG
from mpc.ring128 import Z128
from protocols.spdz import online
from protocols.spdz.dealer import InsecureDealer
from protocols.spdz.maccheck import check_zero, combine, commit, sigma_share, z128_bytes, z128_from_bytes
from protocols.spdz.shares import AuthShare, flat_concat


def share_values(ds: list[InsecureDealer], x: np.ndarray, owner: int = 0) -> list[AuthShare]:
    masks = [d.input_masks(owner, x.shape) for d in ds]
    d = online.input_masked(x, masks[owner].value)  # type: ignore[arg-type]
    return [online.input_share(m.mask, d, i, ds[i].mac_key_share()) for i, m in enumerate(masks)]


def open_all(parts: list[AuthShare]) -> Z128:
    """What the engine's open computes: the sum of the value shares (128 bits)."""
    total = parts[0].share
    for p in parts[1:]:
        total = r128.add(total, p.share)
    return total


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("shape", [(), (7,), (3, 4)], ids=["0d", "1d", "2d"])
def test_beaver_elementwise(prg: PRG, seed: bytes, n: int, shape: tuple[int, ...]) -> None:
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    x, y = prg.uint64(shape), prg.uint64(shape)
    xs, ys = share_values(ds, x, 0), share_values(ds, y, n - 1)
    triples = [d.triples(shape) for d in ds]
    masks = [online.beaver_masks(a, b, t) for a, b, t in zip(xs, ys, triples)]
    d = open_all([m[0] for m in masks])
    e = open_all([m[1] for m in masks])
    z = [online.beaver_product("mul", d, e, xi, t) for xi, t in zip(xs, triples)]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(open_checked(z, alpha), x * y)


@pytest.mark.parametrize("n", [2, 3])
def test_beaver_large_uses_blocks(prg: PRG, seed: bytes, n: int) -> None:
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    x, y = prg.uint64(40_000), prg.uint64(40_000)
    xs, ys = share_values(ds, x, 0), share_values(ds, y, 1)
    triples = [d.triples(x.shape) for d in ds]
    masks = [online.beaver_masks(a, b, t) for a, b, t in zip(xs, ys, triples)]
    d, e = open_all([m[0] for m in masks]), open_all([m[1] for m in masks])
    z = [online.beaver_product("mul", d, e, xi, t) for xi, t in zip(xs, triples)]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(open_checked(z, alpha), x * y)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_beaver_matmul_is_the_same_routine(prg: PRG, seed: bytes, n: int) -> None:
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    x, y = prg.uint64((3, 5)), prg.uint64((5, 2))
    xs, ys = share_values(ds, x, 1), share_values(ds, y, 0)
    triples = [d.matrix_triple(3, 5, 2) for d in ds]
    masks = [online.beaver_masks(a, b, t) for a, b, t in zip(xs, ys, triples)]
    d, e = open_all([m[0] for m in masks]), open_all([m[1] for m in masks])
    z = [online.beaver_product("matmul", d, e, xi, t) for xi, t in zip(xs, triples)]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(open_checked(z, alpha), np.matmul(x, y))
    with pytest.raises(ConfigError):
        online.beaver_product("conv", d, e, xs[0], triples[0])
    with pytest.raises(ConfigError):
        online.beaver_masks(ys[0], xs[0], triples[0])


def _truncate_all(ds: list[InsecureDealer], x_signed: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Shares of x, truncation by f as the protocol does it; returns (result, floor(x / 2^f))."""
    x = x_signed.astype(np.int64).view(np.uint64)
    xs = share_values(ds, x, 0)
    pairs = [d.truncation_pairs(x.shape, f) for d in ds]
    keys = [d.mac_key_share() for d in ds]
    masked = [online.truncation_masked(a, p, i, keys[i]) for i, (a, p) in enumerate(zip(xs, pairs))]
    c = open_all(masked)
    out = [online.truncation_result(c, p, i, keys[i]) for i, p in enumerate(pairs)]
    t = open_checked(out, mac_key(ds)).view(np.int64)
    return t, x_signed >> f


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("f", [1, 16, 30])
def test_truncation_exact_up_to_rounding_over_the_whole_range(prg: PRG, seed: bytes, n: int, f: int) -> None:
    ds = dealers(n, seed)
    edges = np.array(
        [0, 1, -1, 2**f - 1, 2**f, -(2**f), 2**62 - 1, -(2**62), 2**62 - 2**f, -(2**62) + 1, 12345, -98765],
        dtype=np.int64,
    )
    bulk = (prg.uint64(2000) >> np.uint64(1)).view(np.int64) - np.int64(2**62)  # uniform in [-2^62, 2^62)
    x = np.concatenate([edges, bulk])
    t, floor = _truncate_all(ds, x, f)
    diff = t - floor
    assert set(np.unique(diff).tolist()) <= {0, 1}
    exact = x % (1 << f) == 0
    assert np.all(diff[exact] == 0)  # a multiple of 2^f truncates exactly


def test_truncation_rounding_is_unbiased(seed: bytes) -> None:
    ds = dealers(2, seed)
    f = 16
    x = np.full(20_000, (7 << f) + (1 << (f - 2)), dtype=np.int64)  # 7.25 in fixed point
    t, floor = _truncate_all(ds, x, f)
    up = float(np.mean(t - floor))
    assert abs(up - 0.25) < 0.03  # rounds up with probability 0.25: E[t] = 7.25


def test_truncation_scalar(seed: bytes) -> None:
    ds = dealers(3, seed)
    t, floor = _truncate_all(ds, np.array(-(5 << 16) - 3, dtype=np.int64), 16)
    assert t.shape == () and int(t - floor) in (0, 1)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_output_mask_keeps_low_bits_hides_high(prg: PRG, seed: bytes, n: int) -> None:
    ds = dealers(n, seed)
    x = prg.uint64(5)
    xs = share_values(ds, x, 0)
    rho = [d.random_values(x.shape) for d in ds]
    opened = open_all([online.output_masked(a, r) for a, r in zip(xs, rho)])
    np.testing.assert_array_equal(opened.lo, x)
    plain_high = open_all(xs).hi
    assert not np.array_equal(opened.hi, plain_high)


# -- the MAC check ---------------------------------------------------------------------------------


def _batch(ds: list[InsecureDealer], prg: PRG) -> tuple[list[AuthShare], Z128]:
    """A batch of authenticated values and their correct opening."""
    parts = [share_values(ds, prg.uint64(6), i % len(ds)) for i in range(2)]
    per_party = [flat_concat([p[i] for p in parts]) for i in range(len(ds))]
    return per_party, open_all(per_party)


def _sigmas(ds: list[InsecureDealer], per_party: list[AuthShare], opened: Z128, seed: bytes) -> list[Z128]:
    out = []
    for d, mine in zip(ds, per_party):
        y, mu = combine([opened], [mine.mac], seed)
        out.append(sigma_share(y, mu, d.mac_key_share()))
    return out


def _flip(x: Z128, index: int, bit: int) -> Z128:
    lo, hi = x.lo.copy(), x.hi.copy()
    if bit < 64:
        lo[index] ^= np.uint64(1 << bit)
    else:
        hi[index] ^= np.uint64(1 << (bit - 64))
    return Z128(lo, hi)


def _v2(v: int) -> int:
    return (v & -v).bit_length() - 1 if v else 10**9


@pytest.mark.parametrize("n", [2, 3, 5])
def test_mac_check_passes_on_honest_batch(prg: PRG, seed: bytes, n: int) -> None:
    ds = dealers(n, seed)
    per_party, opened = _batch(ds, prg)
    check_zero(_sigmas(ds, per_party, opened, prg.bytes(16)))


@pytest.mark.parametrize("n", [2, 3])
def test_mac_check_catches_every_single_bit_tamper(prg: PRG, seed: bytes, n: int) -> None:
    """Flip each of the 128 bits of a value share (as sent) and of a MAC share.

    Every flip that changes the value mod 2^64 (value bits 0..63) and every MAC flip in bits
    0..64 is caught whatever the coefficients; a flip in a higher bit changes no output and is
    caught unless the coefficient (times alpha, for value bits) absorbs it, exactly as
    2-adic arithmetic predicts.
    """
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    per_party, opened = _batch(ds, prg)
    chi_seed = prg.bytes(16)
    index = 3
    chi = int(PRG(chi_seed).uint64(opened.shape)[index])
    for bit in range(128):
        # A party sends its value share with one bit flipped: everyone opens a wrong value.
        bad_value = _flip(opened, index, bit)  # an error of +-2^bit in the opened value
        must = bit < 64 or (alpha * chi << bit) % M128 != 0
        _assert_check(ds, per_party, bad_value, chi_seed, must, f"value bit {bit}")
        # A party's MAC share with one bit flipped.
        tampered = list(per_party)
        mac = _flip(per_party[1].mac, index, bit)
        tampered[1] = AuthShare.from_parts(per_party[1].share, mac)
        must = bit <= 64 or (chi << bit) % M128 != 0
        _assert_check(ds, tampered, opened, chi_seed, must, f"mac bit {bit}")
        if bit <= 64:
            assert (chi << bit) % M128 != 0 and _v2(chi) < 64


def _assert_check(ds: list[InsecureDealer], per_party: list[AuthShare], opened: Z128, chi_seed: bytes, must_fail: bool, what: str) -> None:
    sig = _sigmas(ds, per_party, opened, chi_seed)
    if must_fail:
        with pytest.raises(MacCheckFailure):
            check_zero(sig)
    else:
        check_zero(sig)  # undetectable, and harmless: only MAC-only or high bits changed


def test_commitments_bind_label_party_and_value() -> None:
    nonce = bytes(16)
    base = commit("spdz#0", 1, nonce, b"value")
    assert len(base) == 32
    assert base == commit("spdz#0", 1, nonce, b"value")
    for other in (commit("spdz#1", 1, nonce, b"value"), commit("spdz#0", 2, nonce, b"value"),
                  commit("spdz#0", 1, bytes(15) + b"\x01", b"value"), commit("spdz#0", 1, nonce, b"valuf")):
        assert other != base


def test_z128_bytes_roundtrip() -> None:
    for v in (0, 1, M64 - 1, M64, M128 - 1):
        x = r128.from_int(v)
        assert int(r128.to_int(z128_from_bytes(z128_bytes(x)))[()]) == v
