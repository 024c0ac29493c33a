"""DP-SGD logistic regression in MPC: clipping, binomial noise, accounting, errors.

With ``sigma = 0`` the MPC equals float training on the clipped rows; the secret binomial noise
has mean 0 and the target variance; with noise the model stays useful; the epsilon is
dp-accounting's (and the analytic Gaussian's); typed errors for bad parameters, a vertical
partition, tampering and a silent peer.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from mpc.errors import AbortError, ConfigError, PeerUnavailable
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols import spdz
from protocols.ml import TrainParams
from protocols.ml.data import column_stats, split_rows
from protocols.ml.dpsgd import (
    binomial_noise,
    clip_rows,
    dp_requirements,
    noise_bits_for,
    noise_unit,
    planned_epsilon,
    train_logreg_dp,
    train_plain_clipped,
)
from protocols.ml.logreg import Scales
from protocols.ml.reference import accuracy
from protocols.spdz.dealer import InsecureDealer

DELTA = 1e-5


@functools.lru_cache(maxsize=1)
def scaled_breast_cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Breast cancer, scaled with constants fixed before training (here: the training split's)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    mean, scale = column_stats(xtr)
    return (xtr - mean) / scale, (xte - mean) / scale, ytr.astype(np.float64), yte.astype(np.float64)


def _params(**kw: Any) -> TrainParams:
    return TrainParams(**{"epochs": 1, "seed": 5, "standardize": False, **kw})


async def prog_dp(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    params = _params(**inp.get("params", {}))
    need = dp_requirements(
        params,
        rows=inp["rows"],
        columns=[inp["x"].shape[1]] * len(inp["rows"]),
        clip=inp["clip"],
        noise_multiplier=inp["sigma"],
        delta=DELTA,
        receivers=inp["receivers"],
        noise_bits=inp.get("noise_bits"),
        prep=InsecureDealer,
    )
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True, capacity=need)
    spdz.setup(s, dealer)
    progress: list[float] = []
    res, eps = await train_logreg_dp(
        s,
        inp["x"],
        inp["y"],
        params=params,
        clip=inp["clip"],
        noise_multiplier=inp["sigma"],
        delta=DELTA,
        receivers=inp["receivers"],
        progress=lambda frac, label: progress.append(frac),
        noise_bits=inp.get("noise_bits"),
    )
    w = None
    if res.model is not None:
        w = np.concatenate([res.model.weights[0][:, 0], res.model.biases[0]])
    return {
        "w": w,
        "eps": eps,
        "left": int(sum(dealer.remaining().values())),
        "rounds": [e.rounds for e in res.epochs],
        "progress": progress,
    }


def _inputs(n: int, seed: bytes, sigma: float, receivers: list[int], clip: float = 1.0, **extra: Any) -> list[dict[str, Any]]:
    xtr, _, ytr, _ = scaled_breast_cancer()
    parts = split_rows(xtr, ytr, n)
    rows = [p[0].shape[0] for p in parts]
    base = {"rows": rows, "seed": seed, "sigma": sigma, "clip": clip, "receivers": receivers, **extra}
    return [{**base, "x": x, "y": y} for x, y in parts]


@pytest.mark.parametrize(("n", "receivers"), [(2, [0]), (3, [1, 2]), (5, [4])])
def test_no_noise_equals_plain_training_on_clipped_rows(seed: bytes, n: int, receivers: list[int]) -> None:
    xtr, xte, ytr, yte = scaled_breast_cancer()
    outs = run_local(prog_dp, _inputs(n, seed, 0.0, receivers, params={"epochs": 2}))
    w_plain = train_plain_clipped(xtr, ytr, _params(epochs=2), 1.0)
    for j, out in enumerate(outs):
        assert out["left"] == 0  # dp_requirements is exact
        assert out["rounds"] == [8 * 7, 8 * 7]  # 8 batches of 7 rounds
        assert out["progress"] == [0.5, 1.0]
        assert out["eps"] == math.inf
        assert (out["w"] is not None) == (j in receivers)
    w = outs[receivers[0]]["w"]
    assert np.max(np.abs(w - w_plain)) <= 1e-3
    assert accuracy(xte, yte, w) == accuracy(xte, yte, w_plain)


def test_clip_rows_bounds_the_encoded_gradient() -> None:
    xtr = scaled_breast_cancer()[0]
    x_bits = Scales.choose(16, 0.5, 64).x_bits
    xa = clip_rows(xtr, 0.7, x_bits)
    enc = np.rint(xa * 2.0**x_bits) / 2.0**x_bits  # the encoding's rounding
    assert np.all(np.linalg.norm(enc, axis=1) * (1 + 2.0**-5) <= 0.7)
    assert np.all(np.linalg.norm(xa, axis=1) > 0.66)  # the breast-cancer rows are all clipped
    small = clip_rows(np.zeros((3, 4)), 10.0, x_bits)  # short rows are left alone
    assert np.array_equal(small, np.hstack([np.zeros((3, 4)), np.ones((3, 1))]))


async def prog_noise(s: Session, inp: dict[str, Any]) -> np.ndarray:
    count, k, unit = inp["count"], inp["k"], inp["unit"]
    need = spdz.Requirements(bits=count * k, random_values=count)
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True, capacity=need)
    spdz.setup(s, dealer)
    noise = binomial_noise(s, (count,), k, unit)
    return np.asarray(await spdz.reveal(s, noise))


@pytest.mark.parametrize("n", [2, 3, 5])
def test_binomial_noise_has_the_target_variance(seed: bytes, n: int) -> None:
    count, k, unit = 6000, 64, 12345
    outs = run_local(prog_noise, [{"seed": seed, "count": count, "k": k, "unit": unit}] * n)
    v = outs[0].astype(np.float64)
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])
    assert np.all(v % unit == 0) and np.max(np.abs(v)) <= unit * k / 2
    target = unit**2 * k / 4
    # with 6000 draws: the mean's standard error is 1.3% of the sd, the variance's 1.8%
    assert abs(v.mean()) <= 0.06 * math.sqrt(target)
    assert abs(v.var() / target - 1) <= 0.08
    # the number of ones is Binomial(64, 1/2): its first moments match
    ones = v / unit + k / 2
    assert abs(np.mean(ones > k / 2) - (1 - 0.5 * (1 + math.comb(k, k // 2) / 2**k))) <= 0.03


def test_noise_unit_and_default_bits() -> None:
    k = noise_bits_for(31, 1.0, DELTA)
    assert k % 16 == 0 and k / 4 >= 23 * math.log(10 * 31 / DELTA) and k >= 64
    assert noise_bits_for(31, 0.0, DELTA) == 0
    m = noise_unit(1.0, 2.0, k, 27)
    assert m * math.sqrt(k) / 2 >= 2.0 * 2**27 > (m - 1) * math.sqrt(k) / 2
    with pytest.raises(ConfigError):
        noise_bits_for(31, 0.01, DELTA)  # would need more than 2^16 bits per sample
    with pytest.raises(ConfigError):
        noise_unit(1.0, 1.0, 15, 27)


def test_noisy_training_stays_accurate(seed: bytes) -> None:
    xtr, xte, ytr, yte = scaled_breast_cancer()
    outs = run_local(prog_dp, _inputs(3, seed, 1.0, [0], params={"epochs": 2}))
    params = _params(epochs=2)
    assert outs[0]["left"] == 0 and outs[0]["rounds"] == [8 * 7, 8 * 7]
    eps = planned_epsilon(params, xtr.shape[0], 64, 1.0, DELTA)
    assert all(o["eps"] == eps for o in outs)
    w, w_plain = outs[0]["w"], train_plain_clipped(xtr, ytr, params, 1.0)
    assert accuracy(xte, yte, w) > 0.85
    # the noise is there: 16 noisy steps of lr / 64 * N(0, 1) move each weight by ~0.03
    assert 0.005 < np.sqrt(np.mean((w - w_plain) ** 2)) < 0.2


def _analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Balle and Wang's exact epsilon of a Gaussian with sensitivity / sigma = mu (bisection)."""

    def delta_of(eps: float) -> float:
        return float(norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2))

    lo, hi = 0.0, 100.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


def test_planned_epsilon_matches_dp_accounting() -> None:
    import dp_accounting
    from dp_accounting.pld import PLDAccountant

    params = _params(epochs=10)
    ours = planned_epsilon(params, 455, 64, 2.0, DELTA)
    acc = PLDAccountant()
    acc.compose(dp_accounting.GaussianDpEvent(1.0), 10)  # multiplier sigma / 2 per epoch
    assert ours == pytest.approx(acc.get_epsilon(DELTA), rel=1e-9)
    # 10 Gaussians of multiplier 1 are one Gaussian of multiplier 1 / sqrt(10)
    assert ours == pytest.approx(_analytic_gaussian_epsilon(math.sqrt(10), DELTA), rel=0.02)
    assert planned_epsilon(params, 455, 64, 4.0, DELTA) < ours  # more noise, less epsilon
    assert planned_epsilon(params, 455, 64, 0.0, DELTA) == math.inf
    with pytest.raises(ConfigError):
        planned_epsilon(params, 455, 32, 2.0, DELTA)
    with pytest.raises(ConfigError):
        planned_epsilon(params, 0, 64, 2.0, DELTA)
    with pytest.raises(ConfigError):
        planned_epsilon(params, 455, 64, 2.0, 1.5)


async def prog_bad(s: Session, inp: dict[str, Any]) -> None:
    spdz.setup(s, InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True))
    await train_logreg_dp(s, inp["x"], inp["y"], clip=1.0, noise_multiplier=1.0, delta=DELTA, **inp["kw"])


@pytest.mark.parametrize(
    "kw",
    [
        {"params": TrainParams(epochs=1)},  # standardize=True: the pooled statistics are not DP
        {"params": TrainParams(epochs=1, standardize=False, sigmoid="piecewise")},
        {"params": TrainParams(epochs=1, standardize=False), "partition": "vertical"},
        {"params": TrainParams(epochs=1, standardize=False), "noise_bits": 17},
    ],
)
def test_bad_parameters_raise_config_error(seed: bytes, kw: dict[str, Any]) -> None:
    xtr, _, ytr, _ = scaled_breast_cancer()
    with pytest.raises(ConfigError):
        run_local(prog_bad, [{"seed": seed, "x": xtr[:10], "y": ytr[:10], "kw": kw}] * 2)


def test_bad_dp_arguments_and_shapes(seed: bytes) -> None:
    params = _params()
    for clip, sigma, delta in [(0.0, 1.0, DELTA), (1.0, -1.0, DELTA), (1.0, 1.0, 0.0), (1e-6, 1.0, DELTA)]:
        with pytest.raises(ConfigError):
            dp_requirements(params, rows=[10, 10], columns=[3, 3], clip=clip, noise_multiplier=sigma, delta=delta)
    with pytest.raises(ConfigError):
        clip_rows(np.ones((2, 3)), 1e-6, 11)
    with pytest.raises(ConfigError):
        dp_requirements(params, rows=[10, 10], columns=[3, 4], clip=1.0, noise_multiplier=1.0, delta=DELTA)
    xtr, _, ytr, _ = scaled_breast_cancer()
    inputs = [{"seed": seed, "x": xtr[:10], "y": ytr[:10], "kw": {"params": params}}, {"seed": seed, "x": xtr[10:20, :29], "y": ytr[10:20], "kw": {"params": params}}]
    with pytest.raises(ConfigError):
        run_local(prog_bad, inputs)


class TamperChannel:
    """A channel that adds 1 to one value of the ``nth`` opening this party sends."""

    def __init__(self, inner: Any, nth: int) -> None:
        self._inner = inner
        self._nth = nth
        self._opens = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send(self, peer: int, tag: str, payload: Any) -> None:
        if "/open#" in tag and isinstance(payload, dict):
            self._opens += 1
            if self._opens == self._nth:
                v = payload["v"].copy()
                v.reshape(-1)[0] += np.uint64(1)
                payload = {**payload, "v": v}
        await self._inner.send(peer, tag, payload)

    async def recv(self, peer: int, tag: str) -> Any:
        return await self._inner.recv(peer, tag)


async def prog_tamper(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    if inp.get("tamper"):
        s = Session(TamperChannel(s.channel, inp["tamper"]), prg=s.prg)
    return await prog_dp(s, inp)


def test_tampered_opening_aborts_every_honest_party(seed: bytes) -> None:
    inputs = _inputs(3, seed, 1.0, [0], noise_bits=64)
    inputs[2]["tamper"] = 20  # party 2 adds 1 to one value it opens, mid-training
    outcomes = run_parties(prog_tamper, inputs)
    for o in outcomes[:2]:
        assert isinstance(o.error, AbortError), o.error


def test_silent_peer_raises_peer_unavailable(seed: bytes) -> None:
    inputs = _inputs(2, seed, 1.0, [0], noise_bits=64)
    inputs[1]["y"] = inputs[1]["y"] * 2  # party 1 fails locally and never sends its input
    outcomes = run_parties(prog_dp, inputs, recv_timeout=1.0)
    assert isinstance(outcomes[1].error, ConfigError)
    assert isinstance(outcomes[0].error, PeerUnavailable)


def test_noisy_training_over_processes(seed: bytes) -> None:
    xtr, xte, _, yte = scaled_breast_cancer()
    outs = run_local(prog_dp, _inputs(2, seed, 1.0, [1], params={"epochs": 1}, noise_bits=256), transport="processes")
    assert outs[0]["w"] is None and outs[1]["left"] == 0
    assert accuracy(xte, yte, outs[1]["w"]) > 0.85
