"""Pure parts of protocols.ml: batch order, statistics, model encodings, parameters, the window test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from spdz_testkit import drive, mac_key, open_checked

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.ml import Model, ModelShares, ModelSpec, TrainParams, decode, encode
from protocols.ml.activation import WINDOW_BITS, sigmoid_clip_cost, sigmoid_clip_steps, window_cost, window_steps
from protocols.ml.data import batch_order, batches, column_stats, pooled_stats, split_columns, split_rows
from protocols.ml.logreg import Z_SCALE, Scales, step_constant
from protocols.ml.reference import activation, train_plain
from protocols.spdz.dealer import InsecureDealer
from protocols.spdz.shares import AuthShare


def uniform(prg: PRG, shape: tuple[int, ...], lo: float, hi: float) -> np.ndarray:
    """Floats in [lo, hi) from the test PRG."""
    return lo + (hi - lo) * (prg.uint64(shape) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def test_batch_order_is_a_public_deterministic_permutation() -> None:
    order = batch_order(455, 3, seed=7)
    assert order.shape == (3, 455)
    for epoch in order:
        assert sorted(epoch.tolist()) == list(range(455))
    assert not np.array_equal(order[0], order[1])
    assert np.array_equal(order, batch_order(455, 3, seed=7))
    assert not np.array_equal(order, batch_order(455, 3, seed=8))
    sizes = [b.size for b in batches(order[0], 64)]
    assert sizes == [64] * 7 + [7]
    with pytest.raises(ConfigError):
        batch_order(10, 1, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        batches(order[0], 0)


def test_pooled_stats_equal_numpy(prg: PRG) -> None:
    x = uniform(prg, (50, 4), -3, 9)
    x[:, 3] = 2.0  # constant column: scale 1
    parts = split_rows(x, np.zeros(50), 3)
    count = sum(p.shape[0] for p, _ in parts)
    sums = sum(p.sum(axis=0) for p, _ in parts)
    squares = sum((p * p).sum(axis=0) for p, _ in parts)
    mean, scale = pooled_stats(count, sums, squares)
    cm, cs = column_stats(x)
    assert np.allclose(mean, x.mean(axis=0)) and np.allclose(mean, cm)
    assert np.allclose(scale[:3], x.std(axis=0)[:3]) and scale[3] == 1.0 and cs[3] == 1.0
    assert [c.shape[1] for c in split_columns(x, 3)] == [1, 1, 2]
    with pytest.raises(ConfigError):
        pooled_stats(0, sums, squares)


def test_model_encoding_round_trip(prg: PRG) -> None:
    w1, w2 = uniform(prg, (5, 3), -2, 2), uniform(prg, (3, 1), -2, 2)
    b1, b2 = uniform(prg, (3,), -1, 1), uniform(prg, (1,), -1, 1)
    model = Model((w1, w2), (b1, b2), uniform(prg, (5,), -100, 100), uniform(prg, (5,), 0.01, 500))
    spec = model.spec
    assert spec == ModelSpec((5, 3, 1), True) and spec.size == 5 + 5 + 15 + 3 + 3 + 1
    packed = encode(model, 16)
    assert packed.dtype == np.uint64 and packed.shape == (spec.size,)
    back = decode(packed, spec, 16)
    for a, b in zip(back.weights + back.biases, model.weights + model.biases):
        assert np.max(np.abs(a - b)) <= 2.0**-17
    assert np.allclose(back.scale, model.scale, rtol=1e-6)  # 1 / scale kept with 2f bits
    x = uniform(prg, (4, 5), -50, 50)
    assert np.max(np.abs(back.logits(x) - model.logits(x))) < 1e-3
    assert ModelSpec.from_dict(spec.as_dict()) == spec
    share = prg.uint64(spec.size)
    shares = [ModelShares(spec, 16, share), ModelShares(spec, 16, packed - share)]
    again = ModelShares.from_dict(shares[1].as_dict())
    assert np.array_equal(shares[0].share + again.share, packed)


def test_model_validation() -> None:
    with pytest.raises(ConfigError):
        Model((np.zeros((3, 2)),), (np.zeros(3),))
    with pytest.raises(ConfigError):
        Model((np.zeros((3, 2)), np.zeros((3, 1))), (np.zeros(2), np.zeros(1)))
    with pytest.raises(ConfigError):
        Model((np.zeros((3, 1)),), (np.zeros(1),), np.zeros(3), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ConfigError):
        ModelSpec((3,))
    with pytest.raises(ConfigError):
        ModelShares(ModelSpec((3, 1)), 16, np.zeros(3, dtype=np.uint64))
    with pytest.raises(ConfigError):
        encode(Model((np.full((2, 1), 2.0**50),), (np.zeros(1),)), 16)


def test_train_params_validation() -> None:
    p = TrainParams(epochs=3, learning_rate=0.25, sigmoid="piecewise")
    assert TrainParams.from_dict(p.as_dict()) == p
    for bad in ({"epochs": 0}, {"batch_size": 0}, {"learning_rate": -1.0}, {"sigmoid": "tanh"}, {"seed": True}):
        with pytest.raises(ConfigError):
            TrainParams(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TrainParams.from_dict({"epochs": 2, "momentum": 0.9})
    assert step_constant(0.5, 64, 16) == 512 and step_constant(0.5, 7, 13) == 585
    sc = Scales.choose(16, 0.5, 64)
    assert (sc.x_bits, sc.w_bits, sc.step_bits) == (11, 41, 14)  # lr / 64 = 2^-7: 128 / 2^14
    assert 2 * sc.x_bits + sc.f + sc.step_bits == Z_SCALE
    assert Scales.choose(16, 4.0, 8).x_bits == 14 and Scales.choose(16, 64.0, 8).x_bits == 16
    with pytest.raises(ConfigError):
        Scales.choose(16, 1e-4, 256)
    with pytest.raises(ConfigError):
        step_constant(1e-9, 64, 16)


def test_plain_training_is_deterministic() -> None:
    x = np.vstack([np.linspace(-2, 2, 40), np.linspace(1, -1, 40)]).T
    y = (x[:, 0] > 0.1).astype(np.float64)
    kw: dict[str, Any] = {"epochs": 5, "batch_size": 8, "learning_rate": 0.5, "seed": 3}
    w = train_plain(x, y, **kw)
    assert np.array_equal(w, train_plain(x, y, **kw))
    assert np.mean(((x @ w[:-1] + w[-1]) > 0) == (y == 1)) >= 0.95
    assert np.array_equal(activation(np.array([-5.0, 0.0, 1.0, 5.0]), "clip"), [0.0, 0.5, 0.75, 1.0])


class _NoComparisonMasks:
    """A provider without ``comparison_masks`` (the window composes its mask from bits)."""

    def __init__(self, inner: InsecureDealer) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "comparison_masks":
            raise AttributeError(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize("masks", [True, False])
@pytest.mark.parametrize("n", [2, 3])
def test_window_test_against_numpy(seed: bytes, prg: PRG, masks: bool, n: int) -> None:
    scale, low = 32, 28
    z = np.concatenate([uniform(prg, (300,), -20, 20), uniform(prg, (40,), -2000, 2000), [-2.0, 2.0, 0.0, 1.99, -2.07]])
    raw = np.rint(z * 2.0**scale).astype(np.int64)
    dealers = [InsecureDealer(i, n, seed, allow_insecure=True) for i in range(n)]
    provs: list[Any] = dealers if masks else [_NoComparisonMasks(d) for d in dealers]
    shares = [AuthShare.from_parts(r128.from_u64(raw.view(np.uint64)), r128.zeros(raw.shape))]
    shares += [AuthShare.from_parts(r128.zeros(raw.shape), r128.zeros(raw.shape)) for _ in range(n - 1)]
    ts = [int(-2 * 2**scale), int(2 * 2**scale)]
    gens = [window_steps(p, i, d.mac_key_share(), s, ts, low) for i, (p, d, s) in enumerate(zip(provs, dealers, shares))]
    results, rounds = drive(gens)
    assert rounds == 4
    total = results[0].data[0]
    for r in results[1:]:
        total = r128.add(total, r.data[0])
    got = total.lo.view(np.int64)
    assert set(np.unique(got).tolist()) <= {0, 1}
    # the MAC shares authenticate the result: sum_i m_i = alpha * sum_i x_i (mod 2^128)
    alpha = r128.sum(r128.from_u64(np.array([d.mac_key_share() for d in dealers], dtype=np.uint64)))
    macs = results[0].data[1]
    for r in results[1:]:
        macs = r128.add(macs, r.data[1])
    assert r128.equal(macs, r128.mul(total, alpha)).all()
    for k, t in enumerate((-2.0, 2.0)):
        sure = np.abs(z - t) >= 2.0**-4
        assert np.array_equal(got[k][sure], (z[sure] < t).astype(np.int64))
    cost = window_cost(z.size, 2, low, prep=provs[0])
    assert cost.triples == z.size * (2 * 11 + (0 if masks else WINDOW_BITS // 2))


@pytest.mark.parametrize("masks", [True, False])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_fused_clip_sigmoid_against_numpy(seed: bytes, prg: PRG, masks: bool, n: int) -> None:
    scale, f = Z_SCALE, 16
    z = np.concatenate([uniform(prg, (200,), -6, 6), uniform(prg, (20,), -1000, 1000), [-2.0, 2.0, 0.0, 1.99, -2.07, 2.5]])
    raw = r128.from_i64(np.rint(z * 2.0**scale).astype(np.int64))
    need = sigmoid_clip_cost(z.size, scale, f, prep=InsecureDealer if masks else _NoComparisonMasks)
    dealers = [InsecureDealer(i, n, seed, allow_insecure=True, capacity=need) for i in range(n)]
    provs: list[Any] = dealers if masks else [_NoComparisonMasks(d) for d in dealers]
    alpha = r128.from_int(mac_key(dealers))
    shares = [AuthShare.from_parts(raw, r128.mul(raw, alpha))]  # party 0 holds x and its MAC
    shares += [AuthShare.from_parts(r128.zeros(raw.shape), r128.zeros(raw.shape)) for _ in range(n - 1)]
    gens = [sigmoid_clip_steps(p, i, d.mac_key_share(), s, scale, f) for i, (p, d, s) in enumerate(zip(provs, dealers, shares))]
    results, rounds = drive(gens)
    assert rounds == 4  # the window test (4) with the product by u fused into its last level
    got = open_checked(results, mac_key(dealers)).view(np.int64) / 2.0**f
    want = np.clip(z / 4 + 0.5, 0, 1)
    sure = (np.abs(z - 2) >= 2.0**-4) & (np.abs(z + 2) >= 2.0**-4)
    assert np.max(np.abs(got - want)[sure]) <= 2.0**-f  # the truncation of z / 4: one unit
    assert np.max(np.abs(got - want)) <= 2.0**-6 + 2.0**-f  # within 2^-4 of +-2: either side
    for d in dealers:
        assert sum(d.remaining().values()) == 0  # sigmoid_clip_cost is exact


@pytest.mark.parametrize("n", [2, 3])
def test_bounded_clip_sigmoid_stays_in_range_for_any_logit(seed: bytes, prg: PRG, n: int) -> None:
    scale, f = Z_SCALE, 16
    inside = np.concatenate([uniform(prg, (100,), -6, 6), [-2.0, 2.0, 1.99, -2.07]])
    raw_in = np.rint(inside * 2.0**scale).astype(np.int64)
    # far outside the window's range (|z| >= 2^11): the tests may give any pair of bits there
    raw_out = (prg.uint64((200,)) | np.uint64(1 << 62)).view(np.int64) * np.where(prg.bits((200,)) == 1, 1, -1)
    raw = r128.from_i64(np.concatenate([raw_in, raw_out]))
    need = sigmoid_clip_cost(raw.size, scale, f, prep=InsecureDealer, bounded=True)
    dealers = [InsecureDealer(i, n, seed, allow_insecure=True, capacity=need) for i in range(n)]
    alpha = r128.from_int(mac_key(dealers))
    shares = [AuthShare.from_parts(raw, r128.mul(raw, alpha))]
    shares += [AuthShare.from_parts(r128.zeros(raw.shape), r128.zeros(raw.shape)) for _ in range(n - 1)]
    gens = [sigmoid_clip_steps(d, i, d.mac_key_share(), s, scale, f, bounded=True) for i, (d, s) in enumerate(zip(dealers, shares))]
    results, rounds = drive(gens)
    assert rounds == 5  # the fused sigmoid and one product by (1 - b1)
    got = open_checked(results, mac_key(dealers)).view(np.int64) / 2.0**f
    want = np.clip(inside / 4 + 0.5, 0, 1)
    assert np.max(np.abs(got[: inside.size] - want)) <= 2.0**-6 + 2.0**-f
    assert np.all((got >= -(2.0**-f)) & (got <= 1 + 2.0**-f))  # bounded whatever the logit
    for d in dealers:
        assert sum(d.remaining().values()) == 0
