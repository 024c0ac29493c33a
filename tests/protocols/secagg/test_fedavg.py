"""Federated averaging over secure aggregation on the breast-cancer data, against plaintext."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from mpc.errors import ConfigError
from mpc.prg import PRG
from mpc.session import Session
from protocols.secagg.fedavg import FedAvgConfig, FedAvgReport, federated_averaging, plaintext_fedavg
from protocols.secagg.models import ModelSpec, local_train
from protocols.secagg.params import SecAggParams
from transport.memory import MemoryNetwork


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    test = np.arange(len(y)) % 5 == 0
    return {"x": x[~test], "y": y[~test].astype(np.float64), "x_test": x[test], "y_test": y[test].astype(np.float64)}


def split(data: dict[str, np.ndarray], n: int, with_eval: bool = False) -> list[dict[str, Any]]:
    parts = []
    for i in range(n):
        part: dict[str, Any] = {"x": data["x"][i::n], "y": data["y"][i::n]}
        if with_eval:
            part |= {"x_eval": data["x_test"][i::n], "y_eval": data["y_test"][i::n]}
        parts.append(part)
    return parts


async def run_job(
    parts: list[dict[str, Any]], config: FedAvgConfig, seeds: dict[str, bytes], program: Any = None
) -> dict[str, Any]:
    parties = ["agg"] + [f"h{i}" for i in range(len(parts))]
    inputs: dict[str, Any] = {"agg": None, **dict(zip(parties[1:], parts))}
    prog = program or (lambda s, d: federated_averaging(s, d, config))
    async with MemoryNetwork(parties, recv_timeout=10.0) as net:
        return await net.run(prog, inputs, seeds=seeds, return_exceptions=True)


def seeds_for(prg: PRG, n: int) -> dict[str, bytes]:
    return {p: prg.bytes(16) for p in ["agg"] + [f"h{i}" for i in range(n)]}


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
async def test_fixed_point_fedavg_equals_plaintext_bit_for_bit(prg: PRG, data: dict[str, np.ndarray], kind: str) -> None:
    n = 3
    spec = ModelSpec(kind, data["x"].shape[1], hidden=8)
    config = FedAvgConfig(model=spec, n_clients=n, rounds=4, local_steps=5, encoding="fixed")
    parts = split(data, n)
    out = await run_job(parts, config, seeds_for(prg, n))
    reference = plaintext_fedavg(parts, config)
    for name, report in out.items():
        assert isinstance(report, FedAvgReport), report
        for secure, plain in zip(report.weights, reference, strict=True):
            np.testing.assert_array_equal(secure, plain)
        assert all(r.survivors == (1, 2, 3) and math.isinf(r.epsilon) for r in report.rounds)
    # and the fixed-point model is the float FedAvg up to the encoding's resolution
    w = spec.init(config.init_seed)
    for _ in range(config.rounds):
        w = w + np.mean([local_train(spec, w, p["x"], p["y"], 5, 0.5) - w for p in parts], axis=0)
    np.testing.assert_allclose(out["agg"].final, w, atol=1e-3)
    assert spec.accuracy(out["agg"].final, data["x_test"], data["y_test"]) > 0.93


async def test_ddg_without_noise_tracks_clipped_plaintext_fedavg(prg: PRG, data: dict[str, np.ndarray]) -> None:
    n = 4
    spec = ModelSpec("logreg", data["x"].shape[1])
    config = FedAvgConfig(model=spec, n_clients=n, rounds=3, local_steps=5, clip=0.5, noise_multiplier=0.0)
    parts = split(data, n)
    out = await run_job(parts, config, seeds_for(prg, n))
    reference = plaintext_fedavg(parts, config)
    for report in out.values():
        for secure, plain in zip(report.weights, reference, strict=True):
            np.testing.assert_allclose(secure, plain, atol=5e-3)  # rounding at granularity c/1024
    np.testing.assert_array_equal(out["agg"].final, out["h0"].final)


async def test_dp_fedavg_reports_accuracy_and_epsilon_per_round(prg: PRG, data: dict[str, np.ndarray]) -> None:
    n = 10
    spec = ModelSpec("logreg", data["x"].shape[1])
    config = FedAvgConfig(
        model=spec, n_clients=n, rounds=5, local_steps=5, clip=1.0, noise_multiplier=0.5, max_dropouts=1
    )
    calls: list[int] = []

    async def program(session: Session, d: Any) -> Any:
        return await federated_averaging(session, d, config, before_release=lambda: calls.append(session.party_id))

    out = await run_job(split(data, n, with_eval=True), config, seeds_for(prg, n), program)
    planned = config.planned_spend()
    agg = out["agg"]
    assert sorted(calls) == list(range(1, n + 1))  # once per client, not per round
    assert agg.epsilon == pytest.approx(planned.epsilon) and math.isfinite(agg.epsilon)
    eps = [r.epsilon for r in agg.rounds]
    assert all(a < b for a, b in zip(eps, eps[1:]))
    assert all(r.epsilon_round == pytest.approx(eps[0]) and r.delta == 1e-5 for r in agg.rounds)
    assert all(r.accuracy is None for r in agg.rounds)
    client = out["h3"]
    assert all(r.accuracy is not None and 0 <= r.accuracy <= 1 for r in client.rounds)
    np.testing.assert_array_equal(client.final, agg.final)
    assert spec.accuracy(agg.final, data["x_test"], data["y_test"]) > 0.85


async def test_a_hospital_dropping_mid_job_leaves_the_others_training(prg: PRG, data: dict[str, np.ndarray]) -> None:
    n = 4
    spec = ModelSpec("logreg", data["x"].shape[1])
    config = FedAvgConfig(
        model=spec,
        n_clients=n,
        rounds=3,
        local_steps=3,
        noise_multiplier=0.0,
        max_dropouts=1,
        secagg=SecAggParams(dim=1, stage_timeout=0.5),
    )

    async def program(session: Session, d: Any) -> Any:
        if session.party_id == 2:
            sub_config = FedAvgConfig(**{**config.__dict__, "rounds": 1})
            return await federated_averaging(session, d, sub_config)  # leaves after round 1
        return await federated_averaging(session, d, config)

    out = await run_job(split(data, n), config, seeds_for(prg, n), program)
    survivors = [r.survivors for r in out["agg"].rounds]
    assert survivors == [(1, 2, 3, 4), (1, 3, 4), (1, 3, 4)]
    np.testing.assert_array_equal(out["h0"].final, out["agg"].final)


async def test_fedavg_refuses_bad_configuration(prg: PRG, data: dict[str, np.ndarray]) -> None:
    spec = ModelSpec("logreg", data["x"].shape[1])
    with pytest.raises(ConfigError):
        FedAvgConfig(model=spec, n_clients=3, rounds=0)
    with pytest.raises(ConfigError):
        FedAvgConfig(model=spec, n_clients=3, rounds=1, encoding="other")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ModelSpec("tree", 3)  # type: ignore[arg-type]
    config = FedAvgConfig(
        model=spec, n_clients=3, rounds=1, encoding="fixed", secagg=SecAggParams(dim=1, stage_timeout=0.3)
    )
    bad = split(data, 3)
    bad[1] = {"x": bad[1]["x"][:, :5], "y": bad[1]["y"]}
    out = await run_job(bad, config, seeds_for(prg, 3))
    assert isinstance(out["h1"], ConfigError)
    wrong_size = FedAvgConfig(model=spec, n_clients=4, rounds=1, encoding="fixed")
    out = await run_job(split(data, 3), wrong_size, seeds_for(prg, 3))
    assert all(isinstance(v, ConfigError) for v in out.values())
