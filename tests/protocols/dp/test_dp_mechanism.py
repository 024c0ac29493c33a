"""Clipping, rotation, rounding, the DDGauss encoder/decoder and the DP secure sum on the mesh."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from mpc.errors import AbortError, BudgetExceeded, ConfigError
from mpc.prg import PRG
from mpc.session import Session
from protocols.dp.aggregate import dp_secure_sum
from protocols.dp.clipping import l2_clip
from protocols.dp.mechanism import DDGParams
from protocols.dp.rotation import fwht, padded_dim, rotate, rotation_signs, unrotate
from protocols.dp.rounding import conditional_round, rounded_l1_bound, rounded_l2_bound
from protocols.secagg.params import SecAggParams
from transport.memory import MemoryNetwork


def floats(prg: PRG, shape: int | tuple[int, ...]) -> np.ndarray:
    """Test data in [-1, 1) from the seeded PRG."""
    return (prg.uint64(shape) >> np.uint64(11)).astype(np.float64) * 2.0**-52 - 1.0


def test_l2_clip(prg: PRG) -> None:
    x = floats(prg, 50) * 10
    clipped = l2_clip(x, 1.5)
    assert np.linalg.norm(clipped) == pytest.approx(1.5)
    np.testing.assert_allclose(clipped / np.linalg.norm(clipped), x / np.linalg.norm(x))
    small = x / np.linalg.norm(x)
    np.testing.assert_array_equal(l2_clip(small, 2.0), small)
    for bad_clip in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError):
            l2_clip(x, bad_clip)
    with pytest.raises(ConfigError):
        l2_clip(np.array([1.0, np.inf]), 1.0)
    with pytest.raises(ConfigError):
        l2_clip(np.ones((2, 2)), 1.0)


def test_fwht_is_the_sylvester_hadamard_matrix(prg: PRG) -> None:
    h = np.array([[1.0]])
    for _ in range(4):
        h = np.kron(np.array([[1.0, 1.0], [1.0, -1.0]]), h)
    x = floats(prg, 16)
    np.testing.assert_allclose(fwht(x), h @ x, atol=1e-12)
    with pytest.raises(ConfigError):
        fwht(np.ones(12))


def test_rotation_is_orthogonal_and_public(prg: PRG) -> None:
    assert [padded_dim(d) for d in (1, 2, 3, 31, 32, 33)] == [1, 2, 4, 32, 32, 64]
    signs = rotation_signs(b"round-7", 64)
    np.testing.assert_array_equal(signs, rotation_signs(b"round-7", 64))
    assert set(np.unique(signs)) == {-1.0, 1.0}
    x = floats(prg, 50)
    y = rotate(x, signs)
    assert y.shape == (64,)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x))
    np.testing.assert_allclose(unrotate(y, signs, 50), x, atol=1e-12)
    # a spike is spread evenly over all coordinates
    spike = np.zeros(64)
    spike[3] = 8.0
    np.testing.assert_allclose(np.abs(rotate(spike, signs)), 1.0)


def test_conditional_rounding(prg: PRG) -> None:
    d, c = 256, 40.0
    x = floats(prg, d)
    x *= c / np.linalg.norm(x)
    bound = rounded_l2_bound(c, d, math.exp(-0.5))
    assert c < bound < c + math.sqrt(d)
    assert rounded_l2_bound(c, d, 0.0) == c + math.sqrt(d)
    assert rounded_l1_bound(3.0, 100) == 9.0 and rounded_l1_bound(30.0, 4) == 60.0
    rounds = np.stack([conditional_round(x, bound, prg) for _ in range(400)])
    assert rounds.dtype == np.int64
    assert np.all(np.abs(rounds - x) < 1)
    assert np.all(np.sqrt((rounds.astype(np.float64) ** 2).sum(axis=1)) <= bound)
    assert np.abs(rounds.mean(axis=0) - x).max() < 0.15  # unbiased up to the conditioning
    with pytest.raises(ConfigError):
        conditional_round(x, c / 2, prg)


def test_params_validation() -> None:
    good = dict(dim=10, clip=1.0, noise_multiplier=1.0, n_clients=5)
    for field, bad in (
        ("dim", 0),
        ("clip", 0.0),
        ("clip", float("inf")),
        ("noise_multiplier", -1.0),
        ("n_clients", 0),
        ("max_dropouts", 5),
        ("bits", 4),
        ("beta", 1.0),
        ("granularity", -1.0),
    ):
        with pytest.raises(ConfigError):
            DDGParams(**{**good, field: bad}).plan()
    with pytest.raises(ConfigError, match="wrap"):
        DDGParams(dim=10, clip=1.0, noise_multiplier=1.0, n_clients=100, bits=16).plan()
    plan = DDGParams(**good).plan()
    assert plan.padded_dim == 16 and plan.noisy
    assert plan.l2_bound < 1.01 * plan.scaled_clip


def test_encode_decode_without_noise_is_the_clipped_sum(prg: PRG) -> None:
    n, d = 4, 37
    plan = DDGParams(dim=d, clip=2.0, noise_multiplier=0.0, n_clients=n).plan()
    seed = b"public-round-seed"
    xs = [floats(prg, d) * (k + 1) for k in range(n)]
    total = np.zeros(plan.padded_dim, dtype=np.uint64)
    for x in xs:
        enc = plan.encode(x, seed, prg)
        assert enc.dtype == np.uint64 and enc.shape == (plan.padded_dim,) and int(enc.max()) < 2**32
        total += enc
    total &= np.uint64(2**32 - 1)
    expected = sum(l2_clip(x, 2.0) for x in xs)
    # rounding error: each client's rotated coordinate moves by < 1 unit of granularity
    np.testing.assert_allclose(plan.decode(total, seed), expected, atol=n * plan.granularity * 2)
    with pytest.raises(ConfigError):
        plan.encode(np.ones(d + 1), seed, prg)
    with pytest.raises(ConfigError):
        plan.decode(np.zeros(3, dtype=np.uint32), seed)


@pytest.mark.parametrize("dropouts", [0, 2])
def test_noise_of_the_survivors_has_the_target_scale(prg: PRG, dropouts: int) -> None:
    n, d, z, c = 6, 4096, 0.5, 1.0
    plan = DDGParams(dim=d, clip=c, noise_multiplier=z, n_clients=n, max_dropouts=dropouts).plan()
    seed = b"seed"
    survivors = n - dropouts
    total = np.zeros(plan.padded_dim, dtype=np.uint64)
    for _ in range(survivors):
        total += plan.encode(np.zeros(d), seed, prg)
    total &= np.uint64(2**32 - 1)
    noise = plan.decode(total, seed)
    # the survivors' noise has (at least) the target central std z * c, and not much more
    assert noise.std() == pytest.approx(z * c, rel=0.06)
    assert abs(noise.mean()) < 5 * z * c / math.sqrt(d)


def names(n_clients: int) -> list[str]:
    return ["agg"] + [f"c{i}" for i in range(n_clients)]


async def run_mesh(program: Any, inputs: dict[str, Any], seeds: dict[str, bytes], timeout: float = 5.0) -> dict[str, Any]:
    async with MemoryNetwork(list(inputs), recv_timeout=timeout) as net:
        return await net.run(program, inputs, seeds=seeds, return_exceptions=True)


@pytest.mark.parametrize("n_clients", [2, 3, 5])
async def test_dp_secure_sum_without_noise_on_the_mesh(prg: PRG, n_clients: int) -> None:
    d = 20
    plan = DDGParams(dim=d, clip=3.0, noise_multiplier=0.0, n_clients=n_clients).plan()
    parties = names(n_clients)
    inputs: dict[str, Any] = {"agg": None, **{p: floats(prg, d) for p in parties[1:]}}
    seeds = {p: prg.bytes(16) for p in parties}
    params = SecAggParams(dim=1, release=True)

    async def program(session: Session, x: Any) -> Any:
        return await dp_secure_sum(session, x, plan, params)

    out = await run_mesh(program, inputs, seeds)
    expected = sum(l2_clip(inputs[p], 3.0) for p in parties[1:])
    for p in parties:
        assert not isinstance(out[p], BaseException), out[p]
        np.testing.assert_allclose(out[p].values, expected, atol=n_clients * plan.granularity * 2)
        assert out[p].survivors == tuple(range(1, n_clients + 1))
    np.testing.assert_array_equal(out["agg"].values, out["c0"].values)


async def test_dp_secure_sum_charges_before_sending_and_a_refusal_is_a_dropout(prg: PRG) -> None:
    n, d = 5, 8
    plan = DDGParams(dim=d, clip=1.0, noise_multiplier=1.0, n_clients=n, max_dropouts=1).plan()
    parties = names(n)
    inputs: dict[str, Any] = {"agg": None, **{p: floats(prg, d) for p in parties[1:]}}
    seeds = {p: prg.bytes(16) for p in parties}
    charged: list[int] = []

    async def program(session: Session, x: Any) -> Any:
        def charge() -> None:
            sent = session.stats.messages_sent
            assert sent == 0, "charged after a message left"  # checked in the hook itself
            if session.party_id == 2:
                raise BudgetExceeded("over budget", rule="budget")
            charged.append(session.party_id)

        params = SecAggParams(dim=1, stage_timeout=0.5)
        return await dp_secure_sum(session, x, plan, params, before_release=charge)

    out = await run_mesh(program, inputs, seeds)
    assert isinstance(out["c1"], BudgetExceeded)  # party 2 refused and sent nothing
    assert sorted(charged) == [1, 3, 4, 5]
    assert out["agg"].survivors == (1, 3, 4, 5)
    assert all(out[p] is None for p in ("c0", "c2", "c3", "c4"))


async def test_dp_secure_sum_refuses_a_sum_with_too_little_noise(prg: PRG) -> None:
    n, d = 4, 8
    plan = DDGParams(dim=d, clip=1.0, noise_multiplier=1.0, n_clients=n, max_dropouts=1).plan()
    parties = names(n)
    inputs: dict[str, Any] = {"agg": None, **{p: floats(prg, d) for p in parties[1:]}}
    seeds = {p: prg.bytes(16) for p in parties}

    async def program(session: Session, x: Any) -> Any:
        if session.party_id in (1, 2):
            return "silent"  # two dropouts, one more than the noise is calibrated for
        return await dp_secure_sum(session, x, plan, SecAggParams(dim=1, stage_timeout=0.3))

    out = await run_mesh(program, inputs, seeds)
    assert isinstance(out["agg"], AbortError)
    assert isinstance(out["c2"], AbortError) and isinstance(out["c3"], AbortError)


async def test_dp_secure_sum_rejects_a_plan_for_another_federation(prg: PRG) -> None:
    plan = DDGParams(dim=4, clip=1.0, noise_multiplier=1.0, n_clients=5).plan()
    parties = names(3)
    inputs: dict[str, Any] = {"agg": None, **{p: np.zeros(4) for p in parties[1:]}}

    async def program(session: Session, x: Any) -> Any:
        return await dp_secure_sum(session, x, plan, SecAggParams(dim=1))

    out = await run_mesh(program, inputs, {p: prg.bytes(16) for p in parties}, timeout=0.5)
    assert all(isinstance(v, ConfigError) for v in out.values())
