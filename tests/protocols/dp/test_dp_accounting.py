"""The distributed discrete Gaussian accountant against dp-accounting on reference settings."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.rdp import rdp_privacy_accountant

from mpc.errors import ConfigError
from protocols.dp.accounting import (
    DEFAULT_ORDERS,
    ddg_rdp,
    ddg_tau,
    epsilon_from_rdp,
    gaussian_pld_epsilon,
)
from protocols.dp.mechanism import DDGParams


def gaussian_rdp_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), rounds)
    return float(accountant.get_epsilon(delta))


def test_single_client_is_the_gaussian_rdp_reference() -> None:
    # PEERS.md reference: Gaussian sigma=1 composed 100 times, RDP epsilon 96.1163 at 1e-5.
    rdp = ddg_rdp(DEFAULT_ORDERS, l2_bound=1.0, l1_bound=1.0, sigma2=1.0, n_clients=1, dim=1)
    eps = epsilon_from_rdp(DEFAULT_ORDERS, 100 * rdp, 1e-5)
    assert eps == pytest.approx(96.1163, abs=1e-3)
    assert eps == pytest.approx(gaussian_rdp_epsilon(1.0, 100, 1e-5), rel=1e-12)
    rdp5 = ddg_rdp(DEFAULT_ORDERS, 1.0, 1.0, 25.0, 1, 1)
    assert epsilon_from_rdp(DEFAULT_ORDERS, 100 * rdp5, 1e-5) == pytest.approx(10.7255, abs=1e-3)


@pytest.mark.parametrize("n_clients, rounds", [(3, 1), (10, 20), (100, 50)])
def test_many_clients_with_large_sigma_agree_with_the_gaussian(n_clients: int, rounds: int) -> None:
    sigma2, l2, dim = 400.0, 30.0, 1024
    assert ddg_tau(sigma2, n_clients) < 1e-300  # the discreteness penalty vanishes
    rdp = ddg_rdp(DEFAULT_ORDERS, l2, l2 * math.sqrt(dim), sigma2, n_clients, dim)
    z = math.sqrt(n_clients * sigma2) / l2
    for delta in (1e-5, 1e-8):
        ours = epsilon_from_rdp(DEFAULT_ORDERS, rounds * rdp, delta)
        assert ours == pytest.approx(gaussian_rdp_epsilon(z, rounds, delta), rel=1e-9)


def test_small_sigma_pays_for_discreteness() -> None:
    # with sigma^2 = 0.1 per client the sum of discrete Gaussians is far from one: the bound
    # must be worse than the continuous Gaussian of the same total variance
    rdp = ddg_rdp(DEFAULT_ORDERS, 3.0, 9.0, 0.1, 50, 16)
    ours = epsilon_from_rdp(DEFAULT_ORDERS, rdp, 1e-5)
    assert ours > gaussian_rdp_epsilon(math.sqrt(50 * 0.1) / 3.0, 1, 1e-5)
    assert ddg_tau(0.1, 50) > ddg_tau(1.0, 50) > ddg_tau(4.0, 50)


def test_rdp_bound_dominates_the_tight_discrete_gaussian_pld() -> None:
    # one client, one coordinate, sensitivity 1: dp-accounting's PLD of the discrete Gaussian
    # is tight; our RDP route must be an upper bound and not far above it.
    for sigma, rounds in ((2.0, 1), (3.0, 10)):
        pld = privacy_loss_distribution.from_discrete_gaussian_mechanism(sigma, sensitivity=1)
        tight = pld.self_compose(rounds).get_epsilon_for_delta(1e-5)
        ours = epsilon_from_rdp(DEFAULT_ORDERS, rounds * ddg_rdp(DEFAULT_ORDERS, 1.0, 1.0, sigma**2, 1, 1), 1e-5)
        assert tight <= ours <= 1.5 * tight


def test_gaussian_pld_reference() -> None:
    # PEERS.md reference: Gaussian sigma=1 composed 100 times, PLD epsilon 91.8173 at 1e-5.
    assert gaussian_pld_epsilon(1.0, 1.0, 100, 1e-5) == pytest.approx(91.8173, rel=2e-3)


def test_plan_reports_per_round_and_cumulative_spend() -> None:
    plan = DDGParams(dim=100, clip=1.0, noise_multiplier=2.0, n_clients=10, max_dropouts=2).plan()
    one = plan.spend(1, 1e-5).epsilon
    cumulative = [plan.spend(r, 1e-5).epsilon for r in range(1, 6)]
    assert one == cumulative[0] > 0
    assert all(a < b for a, b in zip(cumulative, cumulative[1:]))
    assert cumulative[-1] < 5 * one  # RDP composes sub-linearly in epsilon
    # the RDP route agrees with dp-accounting's Gaussian at the plan's parameters (tau ~ 0)
    z = math.sqrt(plan.noisy_clients * float(plan.sigma2)) / plan.l2_bound
    assert one == pytest.approx(gaussian_rdp_epsilon(z, 1, 1e-5), rel=1e-9)
    assert plan.spend(0, 1e-5).epsilon == 0.0
    plain = DDGParams(dim=100, clip=1.0, noise_multiplier=0.0, n_clients=10).plan()
    assert math.isinf(plain.spend(3, 1e-5).epsilon)
    assert np.all(np.isinf(plain.round_rdp()))


def test_dropout_tolerance_costs_privacy_accounted_for_survivors_only() -> None:
    kw = dict(dim=100, clip=1.0, noise_multiplier=2.0, n_clients=10)
    none = DDGParams(**kw, max_dropouts=0).plan()
    some = DDGParams(**kw, max_dropouts=5).plan()
    # each client adds more noise, the guarantee (for 5 survivors) is the same target
    assert float(some.sigma2) == pytest.approx(2 * float(none.sigma2), rel=1e-2)
    assert some.spend(1, 1e-5).epsilon == pytest.approx(none.spend(1, 1e-5).epsilon, rel=1e-2)


def test_accounting_errors() -> None:
    with pytest.raises(ConfigError):
        ddg_rdp([0.5], 1.0, 1.0, 1.0, 1, 1)
    with pytest.raises(ConfigError):
        ddg_rdp([2.0], 1.0, 1.0, 0.0, 1, 1)
    with pytest.raises(ConfigError):
        epsilon_from_rdp([2.0], np.array([1.0]), 0.0)
