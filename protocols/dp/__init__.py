"""Distributed differential privacy for secure aggregation: the distributed discrete Gaussian
mechanism (Kairouz, Liu, Steinke, ICML 2021) with the exact sampler of Canonne, Kamath and
Steinke (NeurIPS 2020) and accounting through Google's ``dp-accounting``.

Modules: :mod:`~protocols.dp.clipping` (L2 clipping), :mod:`~protocols.dp.rotation` (randomized
Walsh-Hadamard rotation with public signs), :mod:`~protocols.dp.rounding` (conditional
randomized rounding), :mod:`~protocols.dp.discrete_gaussian` (the exact sampler, randomness from
:class:`~mpc.prg.PRG` only), :mod:`~protocols.dp.accounting` (RDP of the sum of discrete
Gaussians, converted by ``dp-accounting``), :mod:`~protocols.dp.mechanism` (parameters, a
client's encoding, the decoding of the sum) and :mod:`~protocols.dp.aggregate` (the DP secure
sum over :mod:`protocols.secagg`).

Security model: each client adds 1/(N - D) of the target noise variance, so the sum released by
secure aggregation is (epsilon, delta)-DP, with respect to adding or removing one client's whole
contribution, whenever at least N - D honest clients' noise is in it; the aggregator refuses to
unmask a sum of fewer than N - D clients. What leaks is only the noised sum (and who survived,
as in :mod:`protocols.secagg`). Rounds and bytes: those of one secure aggregation of the padded
vector (a power of two at least the dimension) in Z_2^bits, 4 bytes per element for 32 bits.
No preprocessing.
"""

from __future__ import annotations

from protocols.dp.accounting import PrivacySpend, ddg_rdp, epsilon_from_rdp, gaussian_pld_epsilon
from protocols.dp.aggregate import DPSumResult, dp_secure_sum, secagg_params_for
from protocols.dp.discrete_gaussian import DiscreteGaussian, calibrated_variance
from protocols.dp.mechanism import DDGParams, DDGPlan

__all__ = [
    "DDGParams",
    "DDGPlan",
    "DPSumResult",
    "DiscreteGaussian",
    "PrivacySpend",
    "calibrated_variance",
    "ddg_rdp",
    "dp_secure_sum",
    "epsilon_from_rdp",
    "gaussian_pld_epsilon",
    "secagg_params_for",
]
