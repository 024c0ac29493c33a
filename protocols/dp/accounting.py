"""Privacy accounting of the distributed discrete Gaussian, through Google's ``dp-accounting``.

``dp-accounting`` has no event for a *sum of discrete Gaussians* over a multi-dimensional
integer vector, so the mechanism's Renyi-DP curve is computed here and handed to the package's
RDP machinery:

- per round, at each order ``alpha`` (Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian
  Mechanism for Federated Learning with Secure Aggregation", ICML 2021, Proposition 14), with
  ``n`` noise-contributing clients each adding N_Z(0, sigma^2)^d, L2/L1 sensitivities
  ``Delta_2``, ``Delta_1`` of one client's rounded vector, ``s2 = Delta_2 / (sqrt(n) sigma)``,
  ``s1 = Delta_1 / (sqrt(n) sigma)`` and ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k/(k+1))``:

      rdp(alpha) = min(alpha/2 s2^2 + tau d,
                       alpha/2 (s2^2 + 2 s1 tau + tau^2 d),
                       alpha/2 (s2 + sqrt(d) tau)^2);

  ``tau`` bounds how far the sum of ``n`` discrete Gaussians is from one discrete Gaussian of
  variance ``n sigma^2`` (for ``n = 1`` it is 0 and the bound is the exact discrete Gaussian
  RDP ``alpha Delta_2^2 / (2 sigma^2)``, Canonne-Kamath-Steinke 2020);
- composition over rounds adds RDP curves (full participation, no subsampling);
- conversion to (epsilon, delta) is ``dp_accounting.rdp.compute_epsilon`` (the improved
  conversion of Canonne-Kamath-Steinke / Asoodeh et al. that the package implements).

The approximation, stated: the RDP route is an upper bound, not exact; the tight PLD of the
discrete mechanism is not available in the package for d > 1. For comparison only,
:func:`gaussian_pld_epsilon` gives the PLD epsilon of the *continuous* Gaussian with the same
central standard deviation and sensitivity: it ignores the discreteness (``tau``) and is
typically 5-10% lower; it is never used for charging a budget.

Neighbouring relation: add or remove one client's whole contribution (user-level DP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.rdp import rdp_privacy_accountant

from mpc.errors import ConfigError

__all__ = ["DEFAULT_ORDERS", "ddg_tau", "ddg_rdp", "epsilon_from_rdp", "PrivacySpend", "gaussian_pld_epsilon"]

DEFAULT_ORDERS: tuple[float, ...] = tuple(rdp_privacy_accountant.DEFAULT_RDP_ORDERS)


def ddg_tau(sigma2: float, n_clients: int) -> float:
    """``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1))``."""
    k = np.arange(1, n_clients, dtype=np.float64)
    return float(10.0 * np.exp(-2.0 * math.pi**2 * sigma2 * k / (k + 1)).sum())


def ddg_rdp(
    orders: Sequence[float],
    l2_bound: float,
    l1_bound: float,
    sigma2: float,
    n_clients: int,
    dim: int,
) -> np.ndarray:
    """RDP of one round of the distributed discrete Gaussian at each order (see module doc).

    Args:
        orders: RDP orders, each above 1.
        l2_bound: ``Delta_2`` of one client's integer vector.
        l1_bound: ``Delta_1`` of one client's integer vector.
        sigma2: each client's discrete Gaussian parameter ``sigma^2``.
        n_clients: clients whose noise is guaranteed in the sum (``n - max_dropouts``).
        dim: the vector's length ``d``.
    """
    if not (sigma2 > 0 and n_clients >= 1 and dim >= 1 and l2_bound >= 0 and l1_bound >= 0):
        raise ConfigError("invalid accounting parameters")
    a = np.asarray(orders, dtype=np.float64)
    if np.any(a <= 1):
        raise ConfigError("RDP orders must exceed 1")
    scale = math.sqrt(n_clients * sigma2)
    s2, s1 = l2_bound / scale, l1_bound / scale
    tau = ddg_tau(sigma2, n_clients)
    term1 = a / 2 * s2**2 + tau * dim
    term2 = a / 2 * (s2**2 + 2 * s1 * tau + tau**2 * dim)
    term3 = a / 2 * (s2 + math.sqrt(dim) * tau) ** 2
    return np.minimum(np.minimum(term1, term2), term3)


def epsilon_from_rdp(orders: Sequence[float], rdp: np.ndarray, delta: float) -> float:
    """(epsilon, delta)-DP from an RDP curve, by ``dp_accounting``'s conversion."""
    if not 0 < delta < 1:
        raise ConfigError("delta must be in (0, 1)")
    eps, _ = rdp_privacy_accountant.compute_epsilon(list(orders), list(rdp), delta)
    return float(eps)


@dataclass(frozen=True)
class PrivacySpend:
    """The privacy cost of a number of rounds.

    Attributes:
        epsilon: the (epsilon, delta)-DP epsilon (``inf`` without noise).
        delta: the delta it holds for.
        rounds: rounds composed.
    """

    epsilon: float
    delta: float
    rounds: int


def gaussian_pld_epsilon(
    central_std: float, sensitivity: float, rounds: int, delta: float
) -> float:
    """PLD epsilon of the continuous Gaussian mechanism composed ``rounds`` times (comparison
    only; see the module docstring)."""
    pld = privacy_loss_distribution.from_gaussian_mechanism(
        central_std, sensitivity=sensitivity, value_discretization_interval=1e-3
    )
    return float(pld.self_compose(rounds).get_epsilon_for_delta(delta))
