"""The distributed discrete Gaussian mechanism (DDGauss): a client's encoding and the decoding of
the secure sum, with its parameters validated up front.

Client ``i`` with a real vector ``x_i`` of length ``d`` (Kairouz, Liu, Steinke, ICML 2021):

1. clip to L2 norm ``c`` and scale by ``1/gamma`` (the granularity), so the norm is at most
   ``c / gamma``;
2. rotate by the randomized Walsh-Hadamard transform (public signs, length ``n = 2^k >= d``);
3. round conditionally onto the integers (norm at most ``Delta_2`` by construction);
4. add N_Z(0, sigma_i^2)^n from the exact sampler, with ``sigma_i^2 = sigma^2 / (N - D)`` for
   ``N`` clients of which at most ``D`` drop (``sigma = noise_multiplier * c / gamma``), so
   the sum over any ``N - D`` or more survivors carries at least the target noise;
5. reduce modulo 2^bits; the vectors are then summed by secure aggregation.

The decoder maps the sum to centred integers in [-2^(bits-1), 2^(bits-1)), un-rotates and
multiplies by ``gamma``: the sum of the survivors' clipped vectors plus noise.

Granularity: by default ``gamma = c / max(1024, 8 sqrt(n))``. Rounding then inflates the
sensitivity by under 1% (``n/4`` against ``(c/gamma)^2`` in ``Delta_2^2``), and its variance
(at most 1/4 per client and coordinate) is negligible beside the noise. Plan construction checks
that no sum can wrap modulo 2^bits: ``N Delta_2`` (every client's coordinate at its maximum)
plus 12 standard deviations of the total noise must stay below 2^(bits-1).

Privacy: see :mod:`protocols.dp.accounting` (RDP of Proposition 14, ``N - D`` clients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError
from mpc.prg import PRG
from protocols.dp.accounting import DEFAULT_ORDERS, PrivacySpend, ddg_rdp, epsilon_from_rdp
from protocols.dp.clipping import l2_clip
from protocols.dp.discrete_gaussian import DiscreteGaussian, calibrated_variance
from protocols.dp.rotation import padded_dim, rotate, rotation_signs, unrotate
from protocols.dp.rounding import conditional_round, rounded_l1_bound, rounded_l2_bound

__all__ = ["DDGParams", "DDGPlan"]

_TAIL_SIGMAS = 12.0


@dataclass(frozen=True)
class DDGParams:
    """What the caller chooses.

    Attributes:
        dim: length ``d`` of a client's real vector.
        clip: L2 clip norm ``c`` (original units).
        noise_multiplier: central noise standard deviation over ``c``; 0 disables noise (then
            epsilon is infinite).
        n_clients: clients ``N``.
        max_dropouts: clients ``D`` that may drop; the noise is calibrated for ``N - D``.
        bits: the sum is computed in Z_2^bits (8..64).
        beta: the conditional rounding's failure probability per try, in [0, 1).
        granularity: ``gamma``; ``None`` for the default above.
    """

    dim: int
    clip: float
    noise_multiplier: float
    n_clients: int
    max_dropouts: int = 0
    bits: int = 32
    beta: float = math.exp(-0.5)
    granularity: float | None = None

    def plan(self) -> DDGPlan:
        """Validate and derive every quantity of the mechanism.

        Raises:
            ConfigError: invalid parameters, or a configuration whose sum could wrap.
        """
        check_int(self.dim, "dim", lo=1)
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError("clip must be positive and finite")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigError("noise_multiplier must be non-negative and finite")
        if not 1 <= self.n_clients or not 0 <= self.max_dropouts < self.n_clients:
            raise ConfigError("need n_clients >= 1 and 0 <= max_dropouts < n_clients")
        if not 8 <= self.bits <= 64:
            raise ConfigError("bits must be in [8, 64]")
        if not 0 <= self.beta < 1:
            raise ConfigError("beta must be in [0, 1)")
        n = padded_dim(self.dim)
        if self.granularity is None:
            gamma = self.clip / max(1024.0, 8.0 * math.sqrt(n))
        else:
            gamma = float(self.granularity)
            if not (math.isfinite(gamma) and gamma > 0):
                raise ConfigError("granularity must be positive and finite")
        scaled_clip = self.clip / gamma
        l2 = rounded_l2_bound(scaled_clip, n, self.beta)
        l1 = rounded_l1_bound(l2, n)
        n_min = self.n_clients - self.max_dropouts
        sigma2: Fraction | None = None
        scale: int | None = None
        if self.noise_multiplier > 0:
            central = self.noise_multiplier * scaled_clip
            sigma2, scale = calibrated_variance(central * central / n_min)
        noise_std = 0.0 if sigma2 is None else math.sqrt(self.n_clients * float(sigma2))
        worst = self.n_clients * l2 + _TAIL_SIGMAS * noise_std
        if worst >= 2.0 ** (self.bits - 1):
            raise ConfigError(
                f"the sum could wrap modulo 2^{self.bits} (bound {worst:.3g}): use more bits "
                "or a coarser granularity"
            )
        return DDGPlan(self, n, gamma, scaled_clip, l2, l1, n_min, sigma2, scale)


@dataclass(frozen=True)
class DDGPlan:
    """A validated DDGauss configuration (made by :meth:`DDGParams.plan`).

    Attributes:
        params: the caller's parameters.
        padded_dim: ``n``, the rotated vector's length (what secure aggregation sums).
        granularity: ``gamma``.
        scaled_clip: ``c / gamma``.
        l2_bound: ``Delta_2`` of a client's integer vector.
        l1_bound: ``Delta_1`` of a client's integer vector.
        noisy_clients: ``N - D``, the clients whose noise the sum is guaranteed to carry.
        sigma2: each client's discrete Gaussian parameter (``None`` without noise).
        laplace_scale: the sampler's proposal scale (``None`` without noise).
    """

    params: DDGParams
    padded_dim: int
    granularity: float
    scaled_clip: float
    l2_bound: float
    l1_bound: float
    noisy_clients: int
    sigma2: Fraction | None
    laplace_scale: int | None

    @property
    def noisy(self) -> bool:
        """Whether clients add noise."""
        return self.sigma2 is not None

    def sampler(self) -> DiscreteGaussian:
        """The exact sampler of each client's noise."""
        if self.sigma2 is None:
            raise ConfigError("this plan adds no noise")
        return DiscreteGaussian(self.sigma2, self.laplace_scale)

    def encode(self, x: np.ndarray, rotation_seed: bytes, prg: PRG) -> np.ndarray:
        """A client's steps 1-5: its contribution as a uint64 vector of ``padded_dim``
        elements of Z_2^bits (to be summed by secure aggregation).

        Args:
            x: the client's real vector of length ``dim``.
            rotation_seed: the round's public seed (identical at every party).
            prg: the client's private randomness (rounding and noise).
        """
        p = self.params
        arr = np.asarray(x)
        if arr.shape != (p.dim,):
            raise ConfigError(f"vector must have shape ({p.dim},)")
        scaled = l2_clip(arr, p.clip) / self.granularity
        rotated = rotate(scaled, rotation_signs(rotation_seed, self.padded_dim))
        q = conditional_round(rotated, self.l2_bound, prg)
        if self.sigma2 is not None:
            q = q + self.sampler().sample(prg, self.padded_dim)
        out = q.view(np.uint64)
        if p.bits < 64:
            out = out & np.uint64((1 << p.bits) - 1)
        return out

    def decode(self, total: np.ndarray, rotation_seed: bytes) -> np.ndarray:
        """The sum (``padded_dim`` elements of Z_2^bits, any unsigned dtype) as the real sum of
        the survivors' clipped vectors plus noise, of length ``dim``."""
        p = self.params
        v = np.asarray(total).astype(np.uint64)
        if v.shape != (self.padded_dim,):
            raise ConfigError(f"sum must have shape ({self.padded_dim},)")
        signed = v.view(np.int64).copy() if p.bits == 64 else v.astype(np.int64)
        if p.bits < 64:
            signed[signed >= 1 << (p.bits - 1)] -= 1 << p.bits
        y = signed.astype(np.float64)
        return unrotate(y, rotation_signs(rotation_seed, self.padded_dim), p.dim) * self.granularity

    def round_rdp(self, orders: tuple[float, ...] = DEFAULT_ORDERS) -> np.ndarray:
        """The RDP curve of one round (``inf`` everywhere without noise)."""
        if self.sigma2 is None:
            return np.full(len(orders), np.inf)
        return ddg_rdp(
            orders, self.l2_bound, self.l1_bound, float(self.sigma2), self.noisy_clients, self.padded_dim
        )

    def spend(self, rounds: int, delta: float, orders: tuple[float, ...] = DEFAULT_ORDERS) -> PrivacySpend:
        """(epsilon, delta) of ``rounds`` rounds (RDP composition, then dp-accounting's
        conversion)."""
        if rounds < 0:
            raise ConfigError("rounds must be non-negative")
        if rounds == 0:
            return PrivacySpend(0.0, delta, 0)
        if self.sigma2 is None:
            return PrivacySpend(math.inf, delta, rounds)
        return PrivacySpend(epsilon_from_rdp(orders, rounds * self.round_rdp(orders), delta), delta, rounds)
