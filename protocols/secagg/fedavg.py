"""Federated averaging over secure aggregation, with distributed DP noise (McMahan et al. 2017;
Kairouz, Liu, Steinke 2021 for the DP part).

Every round: each client trains the current global model on its own data (full-batch gradient
descent), encodes its update ``w_local - w`` and the updates are summed by secure aggregation;
the aggregator releases the sum to the survivors, and every party (aggregator included, who
holds no data) sets ``w += server_lr * sum / |survivors|``. Encodings:

- ``"ddg"``: the distributed discrete Gaussian mechanism (:mod:`protocols.dp`): updates clipped
  to L2 norm ``clip``, rotated, rounded, noised with ``noise_multiplier`` (0: no noise),
  summed in Z_2^bits. Each round is accounted by :mod:`protocols.dp.accounting`; the report
  gives (epsilon, delta) per round and cumulative; the whole job's spend is known before it runs
  (:meth:`FedAvgConfig.planned_spend`), so a budget ledger can refuse it up front.
- ``"fixed"``: no DP: updates in fixed point with ``frac_bits`` fractional bits (round to
  nearest), summed exactly; :func:`plaintext_fedavg` reproduces such a run bit for bit.

Threat model: that of :mod:`protocols.secagg` (semi-honest; individual updates stay hidden, the
sum of each round is released to the survivors) and, with ``"ddg"``, the released sums are
(epsilon, delta)-DP at the user level (one client's whole data set). Every party learns every
round's model. Costs per round: one secure aggregation of the (padded) parameter vector.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from mpc.errors import ConfigError
from mpc.session import Session
from protocols.dp.accounting import PrivacySpend
from protocols.dp.aggregate import dp_secure_sum
from protocols.dp.mechanism import DDGParams, DDGPlan
from protocols.secagg.models import ModelSpec, local_train
from protocols.secagg.params import SecAggParams
from protocols.secagg.protocol import secure_aggregate

__all__ = [
    "FedAvgConfig",
    "RoundReport",
    "FedAvgReport",
    "federated_averaging",
    "plaintext_fedavg",
    "encode_fixed",
    "decode_fixed",
]


@dataclass(frozen=True)
class FedAvgConfig:
    """A federated averaging job.

    Attributes:
        model: the architecture.
        n_clients: clients (the session has them plus the aggregator).
        rounds: ``R``.
        local_steps: gradient steps per client per round.
        learning_rate: client learning rate.
        server_learning_rate: scale of the averaged update.
        encoding: ``"ddg"`` (DP) or ``"fixed"`` (no DP).
        clip: L2 clip of a client's update (``"ddg"``).
        noise_multiplier: central noise std over ``clip`` (``"ddg"``; 0 for none).
        delta: the delta of the reported (epsilon, delta).
        max_dropouts: clients that may drop over the whole job.
        bits: the ring Z_2^bits of the sums.
        frac_bits: fractional bits of ``"fixed"``.
        secagg: secure aggregation options (graph, threshold, timeouts, aggregator); its
            ``dim``, ``bits``, ``max_dropouts``, ``min_survivors`` and ``release`` are set here.
        init_seed: public seed of the initial model.
    """

    model: ModelSpec
    n_clients: int
    rounds: int
    local_steps: int = 10
    learning_rate: float = 0.5
    server_learning_rate: float = 1.0
    encoding: Literal["ddg", "fixed"] = "ddg"
    clip: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5
    max_dropouts: int = 0
    bits: int = 32
    frac_bits: int = 16
    secagg: SecAggParams = field(default_factory=lambda: SecAggParams(dim=1))
    init_seed: bytes = b"fedavg-public-init"

    def __post_init__(self) -> None:
        if self.encoding not in ("ddg", "fixed"):
            raise ConfigError(f"unknown encoding {self.encoding!r}")
        if self.rounds < 1 or self.local_steps < 0:
            raise ConfigError("rounds must be positive and local_steps non-negative")
        if not 0 < self.delta < 1:
            raise ConfigError("delta must be in (0, 1)")
        if self.encoding == "fixed" and not 0 <= self.frac_bits < self.bits - 1:
            raise ConfigError("frac_bits must be in [0, bits - 1)")

    def ddg_plan(self) -> DDGPlan | None:
        """The DP mechanism of ``"ddg"`` (``None`` for ``"fixed"``)."""
        if self.encoding != "ddg":
            return None
        return DDGParams(
            dim=self.model.size,
            clip=self.clip,
            noise_multiplier=self.noise_multiplier,
            n_clients=self.n_clients,
            max_dropouts=self.max_dropouts,
            bits=self.bits,
        ).plan()

    def planned_spend(self) -> PrivacySpend:
        """(epsilon, delta) of the whole job, known before it runs (``inf`` without DP)."""
        plan = self.ddg_plan()
        if plan is None:
            return PrivacySpend(math.inf, self.delta, self.rounds)
        return plan.spend(self.rounds, self.delta)

    def secagg_params(self) -> SecAggParams:
        """The secure aggregation parameters of one round."""
        return dataclasses.replace(
            self.secagg,
            dim=self.model.size,
            bits=self.bits,
            max_dropouts=self.max_dropouts,
            min_survivors=max(self.n_clients - self.max_dropouts, 2),
            release=True,
        )


@dataclass(frozen=True)
class RoundReport:
    """One round.

    Attributes:
        round: index from 0.
        survivors: clients whose updates are in the round's sum.
        epsilon_round: epsilon of this round alone.
        epsilon: cumulative epsilon after this round.
        delta: the delta of both.
        accuracy: this client's accuracy on its evaluation data after the round (``None`` at
            the aggregator or without evaluation data).
    """

    round: int
    survivors: tuple[int, ...]
    epsilon_round: float
    epsilon: float
    delta: float
    accuracy: float | None


@dataclass(frozen=True)
class FedAvgReport:
    """A party's view of a finished job.

    Attributes:
        weights: the model after each round (float64 vectors).
        rounds: one report per round.
    """

    weights: list[np.ndarray]
    rounds: list[RoundReport]

    @property
    def final(self) -> np.ndarray:
        """The trained model."""
        return self.weights[-1]

    @property
    def epsilon(self) -> float:
        """Cumulative epsilon of the job."""
        return self.rounds[-1].epsilon

    def as_dict(self) -> dict[str, Any]:
        """A msgpack-friendly copy (for multi-process runs and job results)."""
        return {
            "weights": [np.asarray(w) for w in self.weights],
            "rounds": [dataclasses.asdict(r) | {"survivors": list(r.survivors)} for r in self.rounds],
        }


def encode_fixed(update: np.ndarray, frac_bits: int, bits: int) -> np.ndarray:
    """Fixed point, round to nearest, reduced modulo 2^bits (uint64).

    Raises:
        ConfigError: a value outside the representable range.
    """
    scaled = np.rint(np.asarray(update, dtype=np.float64) * 2.0**frac_bits)
    if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled) >= 2.0 ** (bits - 2)):
        raise ConfigError("update out of the fixed-point range")
    out = scaled.astype(np.int64).view(np.uint64)
    return out & np.uint64((1 << bits) - 1) if bits < 64 else out


def decode_fixed(total: np.ndarray, frac_bits: int, bits: int) -> np.ndarray:
    """Inverse of :func:`encode_fixed` for a sum (centred modulo 2^bits)."""
    v = np.asarray(total).astype(np.uint64)
    signed = v.view(np.int64).copy() if bits == 64 else v.astype(np.int64)
    if bits < 64:
        signed[signed >= 1 << (bits - 1)] -= 1 << bits
    return signed.astype(np.float64) / 2.0**frac_bits


def _client_data(data: Any, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    if not isinstance(data, Mapping) or "x" not in data or "y" not in data:
        raise ConfigError("client data must be a mapping with 'x' and 'y' (and optional 'x_eval', 'y_eval')")
    x = np.asarray(data["x"], dtype=np.float64)
    y = np.asarray(data["y"], dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != spec.n_features or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ConfigError(f"client data must be x (m, {spec.n_features}) and y (m,), m >= 1")
    xe = data.get("x_eval")
    ye = data.get("y_eval")
    if (xe is None) != (ye is None):
        raise ConfigError("give both x_eval and y_eval, or neither")
    if xe is not None:
        xe = np.asarray(xe, dtype=np.float64)
        ye = np.asarray(ye, dtype=np.float64)
    return x, y, xe, ye


async def federated_averaging(
    session: Session,
    data: Any,
    config: FedAvgConfig,
    *,
    before_release: Callable[[], None] | None = None,
) -> FedAvgReport:
    """Train ``config.model`` for ``config.rounds`` rounds of secure (DP) federated averaging.

    Every party calls this: the aggregator (``config.secagg.server``) with ``data=None``, each
    client with ``{"x": (m, d), "y": (m,), "x_eval": ..., "y_eval": ...}`` (evaluation optional).

    Args:
        session: this party's session (``n_clients`` clients plus the aggregator).
        data: the client's data, ``None`` at the aggregator.
        config: the job.
        before_release: called by each client once, before its first message (where a node
            commits its privacy-budget charge of :meth:`FedAvgConfig.planned_spend`).

    Returns:
        This party's :class:`FedAvgReport`.

    Raises:
        ConfigError: invalid configuration or data (before anything is sent).
        MPCError: as :func:`protocols.secagg.secure_aggregate` (a client dropped by the
            aggregator raises ``AbortError`` and takes no further part).
    """
    spec = config.model
    params = config.secagg_params()
    plan = config.ddg_plan()
    server = params.server
    is_server = session.party_id == server
    if session.n_parties - 1 != config.n_clients:
        raise ConfigError(f"the session has {session.n_parties - 1} clients, the job {config.n_clients}")
    if is_server and data is not None:
        raise ConfigError("the aggregator holds no data: call it with data=None")
    x = y = xe = ye = None
    if not is_server:
        x, y, xe, ye = _client_data(data, spec)
    w = spec.init(config.init_seed)
    weights: list[np.ndarray] = []
    reports: list[RoundReport] = []
    sub = session.child("fedavg")
    hook = before_release
    for r in range(config.rounds):  # a loop over training rounds
        update = None
        if not is_server:
            update = local_train(spec, w, x, y, config.local_steps, config.learning_rate) - w
        if plan is not None:
            res = await dp_secure_sum(sub, update, plan, params, before_release=hook)
            if res is None:
                raise ConfigError("secure aggregation released nothing")  # release=True always
            total, survivors = res.values, res.survivors
            eps_round = plan.spend(1, config.delta).epsilon
            eps = plan.spend(r + 1, config.delta).epsilon
        else:
            enc = None if update is None else encode_fixed(update, config.frac_bits, config.bits)
            if hook is not None and not is_server:
                hook()
            sres = await secure_aggregate(sub, enc, params)
            if sres is None:
                raise ConfigError("secure aggregation released nothing")
            total = decode_fixed(sres.total, config.frac_bits, config.bits)
            survivors = sres.survivors
            eps_round = eps = math.inf
        hook = None
        w = w + config.server_learning_rate * total / len(survivors)
        weights.append(w)
        acc = spec.accuracy(w, xe, ye) if xe is not None and ye is not None else None
        reports.append(RoundReport(r, survivors, eps_round, eps, config.delta, acc))
    return FedAvgReport(weights, reports)


def plaintext_fedavg(
    datasets: Sequence[Mapping[str, Any]], config: FedAvgConfig
) -> list[np.ndarray]:
    """The reference: the same training in the clear, every client surviving every round.

    With ``encoding="fixed"`` updates go through the same fixed-point encoding and an exact sum,
    so the models equal those of :func:`federated_averaging` bit for bit. With ``"ddg"`` the
    updates are clipped to ``clip`` and averaged in float64 without rotation, rounding or noise.

    Returns:
        The model after each round.
    """
    spec = config.model
    parsed = [_client_data(d, spec) for d in datasets]
    w = spec.init(config.init_seed)
    out = []
    for _ in range(config.rounds):
        updates = [local_train(spec, w, x, y, config.local_steps, config.learning_rate) - w for x, y, _, _ in parsed]
        if config.encoding == "fixed":
            acc = np.zeros(spec.size, dtype=np.uint64)
            for u in updates:
                acc += encode_fixed(u, config.frac_bits, config.bits)
            if config.bits < 64:
                acc &= np.uint64((1 << config.bits) - 1)
            total = decode_fixed(acc, config.frac_bits, config.bits)
        else:
            total = np.sum([u * min(1.0, config.clip / max(np.linalg.norm(u), 1e-300)) for u in updates], axis=0)
        w = w + config.server_learning_rate * total / len(updates)
        out.append(w)
    return out
