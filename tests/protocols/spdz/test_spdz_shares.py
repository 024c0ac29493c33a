"""Authenticated shares, local linear operations and the InsecureDealer (no network)."""

from __future__ import annotations

import numpy as np
import pytest
from spdz_testkit import M64, dealers, mac_key, open_checked

from mpc import ring128 as r128
from mpc.errors import ConfigError, InsecureConfiguration, PreprocessingExhausted
from mpc.prg import PRG
from protocols.spdz import shares as sh
from protocols.spdz.dealer import InsecureDealer, insecure_dealer
from protocols.spdz.online import input_masked, input_share
from protocols.spdz.preprocessing import Requirements
from protocols.spdz.shares import AuthShare

SHAPES = [(), (5,), (2, 3)]


def share_values(ds: list[InsecureDealer], x: np.ndarray, owner: int = 0) -> list[AuthShare]:
    """Authenticated shares of ``x`` made as the input protocol does (masks from the dealers)."""
    masks = [d.input_masks(owner, x.shape) for d in ds]
    d = input_masked(x, masks[owner].value)  # type: ignore[arg-type]
    return [input_share(m.mask, d, i, ds[i].mac_key_share()) for i, m in enumerate(masks)]


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("shape", SHAPES, ids=["0d", "1d", "2d"])
def test_linear_operations_match_numpy(prg: PRG, seed: bytes, n: int, shape: tuple[int, ...]) -> None:
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    x, y = prg.uint64(shape), prg.uint64(shape)
    c = prg.uint64(shape)
    xs, ys = share_values(ds, x, 0), share_values(ds, y, n - 1)
    keys = [d.mac_key_share() for d in ds]
    with np.errstate(over="ignore"):
        cases = {
            "x": ([a for a in xs], x),
            "add": ([sh.add(a, b) for a, b in zip(xs, ys)], x + y),
            "sub": ([sh.sub(a, b) for a, b in zip(xs, ys)], x - y),
            "neg": ([sh.neg(a) for a in xs], np.uint64(0) - x),
            "add_public": ([sh.add_public(a, c, i, keys[i]) for i, a in enumerate(xs)], x + c),
            "mul_public": ([sh.mul_public(a, c) for a in xs], x * c),
            "shl": ([sh.shl(a, 7) for a in xs], x << np.uint64(7)),
            "sum": ([a.sum() for a in xs], np.sum(x, dtype=np.uint64)),
        }
    for name, (parts, expected) in cases.items():
        got = open_checked(parts, alpha)
        np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.uint64), err_msg=name)


def test_structural_operations(prg: PRG, seed: bytes) -> None:
    ds = dealers(3, seed)
    alpha = mac_key(ds)
    x = prg.uint64((3, 4))
    xs = share_values(ds, x, 1)
    checks = [
        (lambda a: a[1], x[1]),
        (lambda a: a[:, 2], x[:, 2]),
        (lambda a: a[..., ::2], x[..., ::2]),
        (lambda a: a[x > x.mean()], x[x > x.mean()]),
        (lambda a: a.reshape(2, 6), x.reshape(2, 6)),
        (lambda a: a.reshape(-1), x.reshape(-1)),
        (lambda a: a.transpose(), x.T),
        (lambda a: a.transpose((1, 0)), x.T),
        (lambda a: a.sum(0), x.sum(0, dtype=np.uint64)),
        (lambda a: a.sum(-1), x.sum(-1, dtype=np.uint64)),
        (lambda a: a.broadcast_to((2, 3, 4)), np.broadcast_to(x, (2, 3, 4))),
        (lambda a: sh.concatenate([a, a], axis=1), np.concatenate([x, x], axis=1)),
        (lambda a: sh.stack([a, a], axis=-1), np.stack([x, x], axis=-1)),
    ]
    for fn, expected in checks:
        np.testing.assert_array_equal(open_checked([fn(a) for a in xs], alpha), expected)


def test_public_operands_broadcast(prg: PRG, seed: bytes) -> None:
    ds = dealers(2, seed)
    alpha = mac_key(ds)
    x = prg.uint64(())
    c = prg.uint64((2, 3))
    xs = share_values(ds, x)
    keys = [d.mac_key_share() for d in ds]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(open_checked([sh.add_public(a, c, i, keys[i]) for i, a in enumerate(xs)], alpha), x + c)
        np.testing.assert_array_equal(open_checked([sh.mul_public(a, c) for a in xs], alpha), x * c)
    with pytest.raises(ConfigError):
        sh.mul_public(xs[0], np.ones(3, dtype=np.int64))


def test_authshare_rejects_bad_layout() -> None:
    with pytest.raises(ConfigError):
        AuthShare(r128.zeros((3, 2)))
    with pytest.raises(ConfigError):
        AuthShare.from_parts(r128.zeros(2), r128.zeros(3))
    with pytest.raises(ConfigError):
        sh.add(AuthShare(r128.zeros((2, 3))), AuthShare(r128.zeros((2, 4))))


def test_index_that_would_mix_share_and_mac_rows_is_refused() -> None:
    x = AuthShare(r128.zeros((2, 3, 3, 3)))
    assert x[[0, 2], 1].shape == (2, 3)
    with pytest.raises(ConfigError):
        x[[0, 1, 2], :, [0, 1, 2]]  # advanced indices around a slice: numpy moves their axis first


@pytest.mark.parametrize("n", [2, 3, 5])
def test_unit_and_scalar_public_addition(prg: PRG, seed: bytes, n: int) -> None:
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    keys = [d.mac_key_share() for d in ds]
    np.testing.assert_array_equal(open_checked([sh.unit(i, keys[i]) for i in range(n)], alpha), np.uint64(1))
    x = prg.uint64((2, 3))
    xs = share_values(ds, x)
    c = np.uint64((1 << 64) - 3)
    scalar = [sh.add_public(a, c, i, keys[i]) for i, a in enumerate(xs)]  # 0-d public: the scalar path
    full = [sh.add_public(a, np.full((2, 3), c), i, keys[i]) for i, a in enumerate(xs)]
    for a, b in zip(scalar, full):
        assert np.array_equal(a.data.lo, b.data.lo) and np.array_equal(a.data.hi, b.data.hi)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(open_checked(scalar, alpha), x + c)


# -- the dealer ----------------------------------------------------------------------------------


def test_dealer_refuses_without_allow_insecure(seed: bytes) -> None:
    with pytest.raises(InsecureConfiguration):
        InsecureDealer(0, 2, seed)
    with pytest.raises(InsecureConfiguration):
        InsecureDealer(0, 2, seed, allow_insecure="yes")  # type: ignore[arg-type]
    for bad in ((2, 2, seed), (0, 2, b"short")):
        with pytest.raises(ConfigError):
            InsecureDealer(*bad, allow_insecure=True)  # type: ignore[arg-type]


async def test_insecure_dealer_helper_refuses_before_any_message() -> None:
    with pytest.raises(InsecureConfiguration):
        await insecure_dealer(None, allow_insecure=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_dealer_material_is_consistent(seed: bytes, n: int) -> None:
    ds = dealers(n, seed)
    alpha = mac_key(ds)
    ts = [d.triples((4, 3)) for d in ds]
    a, b, c = (open_checked([getattr(t, f) for t in ts], alpha) for f in "abc")
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(c, a * b)
    ms = [d.matrix_triple(2, 3, 4) for d in ds]
    a, b, c = (open_checked([getattr(t, f) for t in ms], alpha) for f in "abc")
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(c, np.matmul(a, b))
    bits = open_checked([d.bits((200,)) for d in ds], alpha)
    assert set(bits.tolist()) == {0, 1}
    owner = n - 2
    masks = [d.input_masks(owner, (6,)) for d in ds]
    r = open_checked([m.mask for m in masks], alpha)
    np.testing.assert_array_equal(r, masks[owner].value)
    assert all(m.value is None for i, m in enumerate(masks) if i != owner)
    open_checked([d.random_values((3,)) for d in ds], alpha)
    pairs = [d.truncation_pairs((50,), 16) for d in ds]
    r = open_checked([p.r for p in pairs], alpha)
    high = open_checked([p.r_high for p in pairs], alpha)
    msb = open_checked([p.r_msb for p in pairs], alpha)
    np.testing.assert_array_equal(high, (r & np.uint64((1 << 63) - 1)) >> np.uint64(16))
    np.testing.assert_array_equal(msb, r >> np.uint64(63))


def test_dealer_material_independent_of_batching(seed: bytes) -> None:
    """Parties that batch (or reserve) differently still hold consistent shares."""
    ds = dealers(3, seed)
    alpha = mac_key(ds)
    ds[0].reserve(Requirements(triples=7))
    parts0 = [ds[0].triples((2,)), ds[0].triples((5,))]
    whole1 = ds[1].triples((7,))
    parts2 = [ds[2].triples((3,)), ds[2].triples((4,))]
    flat = [
        sh.concatenate([p.a for p in parts0]),
        whole1.a,
        sh.concatenate([p.a for p in parts2]),
    ]
    open_checked(flat, alpha)


def test_capacity_and_reservation(seed: bytes) -> None:
    cap = Requirements(triples=10, input_masks={0: 4}, truncation_pairs={16: 2})
    d = InsecureDealer(0, 2, seed, allow_insecure=True, capacity=cap)
    assert d.remaining() == {"triples": 10, "input_masks/0": 4, "truncation_pairs/16": 2}
    d.triples((3,))
    assert d.remaining()["triples"] == 7
    with pytest.raises(PreprocessingExhausted):
        d.reserve(Requirements(triples=8))
    assert d.remaining()["triples"] == 7  # a refused reservation consumes nothing
    d.reserve(Requirements(triples=5))
    assert d.remaining()["triples"] == 7
    d.triples((6,))
    assert d.remaining()["triples"] == 1
    with pytest.raises(PreprocessingExhausted):
        d.triples((2,))
    with pytest.raises(PreprocessingExhausted):
        d.input_masks(0, (5,))
    with pytest.raises(PreprocessingExhausted):
        d.bits(())
    with pytest.raises(PreprocessingExhausted):
        d.truncation_pairs((3,), 16)
    with pytest.raises(PreprocessingExhausted):
        d.matrix_triple(1, 1, 1)
    unlimited = InsecureDealer(0, 2, seed, allow_insecure=True)
    assert unlimited.remaining() == {}


def test_requirements_counts_and_sum() -> None:
    a = Requirements(triples=3, matrix_triples={(2, 3, 4): 1}, input_masks={1: 5}, truncation_pairs={16: 2})
    b = Requirements(triples=1, input_masks={1: 1, 0: 2}, bits=4)
    assert (a + b).counts() == {
        "triples": 4,
        "bits": 4,
        "matrix_triples/2x3x4": 1,
        "input_masks/1": 6,
        "input_masks/0": 2,
        "truncation_pairs/16": 2,
    }
    with pytest.raises(ConfigError):
        Requirements(triples=-1).counts()


def test_mac_key_share_is_64_bit_and_alpha_lifted(seed: bytes) -> None:
    ds = dealers(5, seed)
    keys = [int(d.mac_key_share()) for d in ds]
    assert all(0 <= k < M64 for k in keys)
    assert mac_key(ds) == sum(keys)  # the sum is taken over Z_2^128, not reduced mod 2^64


def test_comparison_masks_independent_of_batching(seed: bytes) -> None:
    """Bit-major comparison masks are the same material however they are reserved and taken."""
    whole = InsecureDealer(1, 3, seed, allow_insecure=True).comparison_masks(9)
    d = InsecureDealer(1, 3, seed, allow_insecure=True)
    d.reserve(Requirements(comparison_masks=3))
    parts = [d.comparison_masks(2), d.comparison_masks(4), d.comparison_masks(3)]  # partly fresh
    for field in ("value", "bits", "pair_products"):
        joined = sh.concatenate([getattr(p, field) for p in parts], axis=-1)
        ref = getattr(whole, field)
        assert joined.shape == ref.shape
        np.testing.assert_array_equal(joined.data.lo, ref.data.lo)
        np.testing.assert_array_equal(joined.data.hi, ref.data.hi)
    assert whole.bits.shape == (64, 9) and whole.pair_products.shape == (32, 9)
