"""DP secure sum: DDGauss encoding at the clients, secure aggregation, decoding.

Every client encodes its real vector with :meth:`DDGPlan.encode` (clip, rotate, round, add its
share of the discrete Gaussian noise, reduce modulo 2^bits); the vectors are summed by
:mod:`protocols.secagg` with ``min_survivors = N - D``, so the aggregator refuses to unmask a sum
carrying less than the target noise; the aggregator (and, with ``release``, the surviving
clients) decode the sum. The rotation's signs come from a public seed bound to the run.

Threat model: that of :mod:`protocols.secagg` (semi-honest) for the inputs; the released sum is
(epsilon, delta)-DP with respect to adding or removing one client's vector, as accounted by
:mod:`protocols.dp.accounting`, provided the honest clients' noise is in it (a client that
colludes with the aggregator can leave its own noise out, so the guarantee counts only honest
noise: choose ``max_dropouts`` to cover such clients too, as Kairouz et al. suggest). Costs are
those of one secure aggregation of ``padded_dim`` elements of Z_2^bits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mpc.errors import ConfigError
from mpc.session import Session
from protocols.dp.mechanism import DDGPlan
from protocols.secagg.params import SecAggParams
from protocols.secagg.protocol import open_run, run_party

__all__ = ["DPSumResult", "dp_secure_sum", "secagg_params_for"]


@dataclass(frozen=True)
class DPSumResult:
    """A decoded DP sum.

    Attributes:
        values: the survivors' clipped vectors summed, plus noise (float64, length ``dim``).
        survivors: the clients whose vectors are in the sum.
        live: at the aggregator, live clients per secure aggregation stage.
    """

    values: np.ndarray
    survivors: tuple[int, ...]
    live: dict[str, tuple[int, ...]]


def secagg_params_for(dp: DDGPlan, base: SecAggParams) -> SecAggParams:
    """``base`` with the vector length, ring, dropouts and survivor floor of the DP plan."""
    p = dp.params
    return dataclasses.replace(
        base,
        dim=dp.padded_dim,
        bits=p.bits,
        max_dropouts=p.max_dropouts,
        min_survivors=max(dp.noisy_clients, 2),
    )


async def dp_secure_sum(
    session: Session,
    x: Any,
    dp: DDGPlan,
    secagg: SecAggParams,
    *,
    before_release: Callable[[], None] | None = None,
) -> DPSumResult | None:
    """Securely sum DDGauss-encoded vectors and decode the result.

    Args:
        session: this party's session (``N`` clients plus the aggregator).
        x: a client's real vector of length ``dp.params.dim``; ``None`` at the aggregator.
        dp: the validated mechanism.
        secagg: secure aggregation options (graph, threshold, timeouts, aggregator,
            release); its ``dim``, ``bits``, ``max_dropouts`` and ``min_survivors`` are
            replaced by those of ``dp``.
        before_release: called by each client once its contribution is encoded, before its
            first message (e.g. a budget ledger's durable charge); an exception stops it.

    Returns:
        The decoded sum at the aggregator, and at clients when ``secagg.release``; else ``None``.

    Raises:
        ConfigError: the session's client count differs from ``dp.params.n_clients``.
        MPCError: as :func:`protocols.secagg.secure_aggregate`.
    """
    params = secagg_params_for(dp, secagg)
    run = open_run(session, params)
    if len(run.plan.clients) != dp.params.n_clients:
        raise ConfigError(
            f"the session has {len(run.plan.clients)} clients, the DP plan {dp.params.n_clients}"
        )
    seed = b"dp-rotation\x00" + run.context
    contribution = None
    if run.session.party_id != run.plan.server:
        contribution = dp.encode(np.asarray(x), seed, run.prg)
        if before_release is not None:
            before_release()
    result = await run_party(run, contribution)
    if result is None:
        return None
    return DPSumResult(dp.decode(result.total, seed), result.survivors, result.live)
