"""Parameters of secure aggregation, validated up front, and the SecAgg+ communication graph.

:class:`SecAggParams` is what a caller chooses; :meth:`SecAggParams.plan` checks it against the
session's size and returns the resolved :class:`SecAggPlan` every stage works from. The trade-offs:

- ``threshold`` ``t``: each client's two secrets (mask key and self-mask seed) are Shamir-shared
  ``t``-out-of-``k`` among its ``k`` neighbours; the aggregator colluding with ``t - 1`` clients
  learns nothing beyond the sum (``t = 1`` is only possible with two clients, where the sum
  reveals each input to the other anyway). Privacy also needs ``t > k / 2``: an honest holder
  reveals, for each peer, the share of only one of the two secrets, so with a majority threshold no
  server can collect ``t`` shares of both secrets of one client from honest holders, even by
  telling holders different stories about who dropped. Recovery needs ``t`` holders of every
  client alive at the end: with the complete graph that is guaranteed when ``t <= k - max_dropouts``
  (checked here); with a sparse graph it is probabilistic (Bell et al., section 3) and a run
  whose dropouts defeat it ends in :class:`~mpc.errors.AbortError`.
- ``neighbors`` ``k``: ``None`` is the complete graph of Bonawitz et al. (every client masks with
  and shares to every other; cost O(n) per client, O(n^2) at the server); an even ``k`` is the
  SecAgg+ Harary graph (each client linked to ``k/2`` clients on each side of a random ring
  order), cost O(k) per client and O(n k) at the server. Bell et al. take ``k = O(log n)``.
- ``max_dropouts`` ``D``: how many clients may fail in total; the run aborts if fewer than
  ``min_survivors`` masked inputs arrive (a DP caller sets ``min_survivors = n - max_dropouts`` so
  the released sum always carries the noise of that many clients). It also sets the quorum of
  the consistency round, ``q = max(t, k - D)`` (:attr:`SecAggPlan.quorum`): before revealing
  anything a client needs, for each partner, ``q`` of that partner's ``k`` holders (itself
  included) to vouch for its survivor list. Two honest holders of a client can then act on
  different survivor lists only if at least ``2 q - k`` of that client's holders are corrupt;
  a smaller ``D`` buys a larger margin (``D = 0``: ``q = k``, no such split at all) at the cost
  of aborting when more than ``D`` holders fail. With ``q = t`` the check guarantees no more than the
  majority threshold's own bound, ``2 t - k`` (see :mod:`protocols.secagg`).
- ``bits``: the sum lives in Z_2^bits; inputs must be in [0, 2^bits); masked vectors travel in
  the smallest unsigned dtype of at least ``bits`` bits (4 bytes per element for ``bits <= 32``).
- ``stage_timeout``: seconds the aggregator waits for the clients' messages of one stage (twice
  that for the unmask answers, which follow the clients' consistency round), and a client for
  its peers' digests; a client silent past it is dropped for the rest of the run. Clients wait
  for the aggregator with the channel's receive timeout, which must therefore exceed
  ``2 * stage_timeout`` plus the aggregator's compute time of a stage.

The graph is derived from public data (session id and protocol path), so every party computes
the same graph and the aggregator cannot choose it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError, InsecureConfiguration
from mpc.prg import PRG

__all__ = ["SecAggParams", "SecAggPlan", "ring_dtype", "harary_neighbors"]

_DTYPES = ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64))


def ring_dtype(bits: int) -> np.dtype:
    """The smallest unsigned numpy dtype holding ``bits`` bits (1 <= bits <= 64)."""
    for width, dtype in _DTYPES:
        if bits <= width:
            return np.dtype(dtype)
    raise ConfigError(f"bits must be at most 64, got {bits}")


@dataclass(frozen=True)
class SecAggParams:
    """What the caller chooses (see the module docstring for the trade-offs).

    Attributes:
        dim: length of every client's vector.
        bits: the sum is computed in Z_2^bits (1..64).
        threshold: Shamir threshold ``t``; default ``k // 2 + 1`` (the smallest secure one).
        neighbors: SecAgg+ degree ``k`` (even); ``None`` for the complete graph.
        max_dropouts: clients that may drop in total (checked against the threshold).
        min_survivors: fewest masked inputs the sum may contain; default ``max(t, 2)``.
        server: party id of the aggregator (it holds no data).
        stage_timeout: seconds the aggregator waits for one stage's messages.
        release: whether the aggregator sends the sum back to the surviving clients.
    """

    dim: int
    bits: int = 32
    threshold: int | None = None
    neighbors: int | None = None
    max_dropouts: int = 0
    min_survivors: int | None = None
    server: int = 0
    stage_timeout: float = 5.0
    release: bool = False

    def plan(self, n_parties: int) -> SecAggPlan:
        """Check the parameters against a session of ``n_parties`` and resolve defaults.

        Raises:
            ConfigError: a parameter is out of range or inconsistent with the others.
            InsecureConfiguration: the threshold is at most half the neighbours.
        """
        for name in ("dim", "bits", "max_dropouts", "server", "n_parties"):
            check_int(n_parties if name == "n_parties" else getattr(self, name), name, numpy=True)
        if self.dim < 1:
            raise ConfigError("dim must be at least 1")
        if not 1 <= self.bits <= 64:
            raise ConfigError("bits must be in [1, 64]")
        n_clients = n_parties - 1
        if n_clients < 2:
            raise ConfigError("secure aggregation needs an aggregator and at least 2 clients")
        if not 0 <= self.server < n_parties:
            raise ConfigError(f"server must be a party id in [0, {n_parties})")
        if not self.stage_timeout > 0:
            raise ConfigError("stage_timeout must be positive")
        if self.neighbors is None or self.neighbors == n_clients - 1:
            k = n_clients - 1
        else:
            k = int(self.neighbors)
            if k < 2 or k > n_clients - 1 or k % 2:
                raise ConfigError(
                    f"neighbors must be even and in [2, {n_clients - 1}], or None for all"
                )
        t = k // 2 + 1 if self.threshold is None else int(self.threshold)
        if t > k:
            raise ConfigError(f"threshold {t} exceeds the {k} neighbours holding shares")
        if 2 * t <= k:
            raise InsecureConfiguration(f"threshold {t} must exceed half of the {k} neighbours")
        if not 0 <= self.max_dropouts <= n_clients - 2:
            raise ConfigError(f"max_dropouts must be in [0, {n_clients - 2}]")
        if k == n_clients - 1 and t > k - self.max_dropouts:
            raise ConfigError(
                f"threshold {t} cannot be met after {self.max_dropouts} dropouts among "
                f"{k} holders; lower the threshold or max_dropouts"
            )
        m = max(t, 2) if self.min_survivors is None else int(self.min_survivors)
        if not max(t, 2) <= m <= n_clients:
            raise ConfigError(f"min_survivors must be in [{max(t, 2)}, {n_clients}]")
        if m > n_clients - self.max_dropouts:
            raise ConfigError(
                f"min_survivors (or the threshold) {m} exceeds the {n_clients - self.max_dropouts} "
                "clients left after max_dropouts"
            )
        clients = tuple(p for p in range(n_parties) if p != self.server)
        return SecAggPlan(
            params=self,
            n_parties=n_parties,
            clients=clients,
            degree=k,
            threshold=t,
            min_survivors=m,
            dtype=ring_dtype(self.bits),
        )


@dataclass(frozen=True)
class SecAggPlan:
    """Validated parameters resolved against a session (built by :meth:`SecAggParams.plan`).

    Attributes:
        params: the caller's parameters.
        n_parties: parties in the session (the aggregator and the clients).
        clients: party ids of the clients, ascending.
        degree: neighbours per client ``k``.
        threshold: Shamir threshold ``t``.
        min_survivors: fewest masked inputs the released sum may contain.
        dtype: the unsigned dtype of masked vectors.
    """

    params: SecAggParams
    n_parties: int
    clients: tuple[int, ...]
    degree: int
    threshold: int
    min_survivors: int
    dtype: np.dtype

    @property
    def quorum(self) -> int:
        """Holders of each partner that must vouch for a client's survivor list before it
        reveals any share: ``max(t, k - max_dropouts)`` (see the module docstring)."""
        return max(self.threshold, self.degree - self.params.max_dropouts)

    @property
    def server(self) -> int:
        """Party id of the aggregator."""
        return self.params.server

    @property
    def dim(self) -> int:
        """Vector length."""
        return self.params.dim

    @property
    def bits(self) -> int:
        """The ring is Z_2^bits."""
        return self.params.bits

    @property
    def complete(self) -> bool:
        """Whether every client neighbours every other (Bonawitz) rather than SecAgg+."""
        return self.degree == len(self.clients) - 1

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """Reduce container values modulo 2^bits in place; returns ``x``."""
        width = self.dtype.itemsize * 8
        if self.bits < width:
            x &= self.dtype.type((1 << self.bits) - 1)
        return x

    def graph(self, public_seed: bytes) -> dict[int, frozenset[int]]:
        """Neighbours of every client (symmetric, no self loops)."""
        if self.complete:
            everyone = frozenset(self.clients)
            return {c: everyone - {c} for c in self.clients}
        return harary_neighbors(self.clients, self.degree, public_seed)


def harary_neighbors(
    clients: tuple[int, ...], degree: int, public_seed: bytes
) -> dict[int, frozenset[int]]:
    """The SecAgg+ graph: a Harary graph H(n, k) on a public random ring order of the clients.

    Args:
        clients: the client ids.
        degree: ``k``, even, below ``len(clients)``.
        public_seed: public randomness every party derives identically (not secret).

    Returns:
        Client id -> its ``k`` neighbours.
    """
    n = len(clients)
    if degree % 2 or not 2 <= degree < n:
        raise ConfigError("a Harary graph needs an even degree in [2, n)")
    prg = PRG.derive(public_seed, "secagg-graph")
    keys = prg.uint64(n)  # a uniformly random order: sort by random 64-bit keys
    order = [clients[i] for i in np.argsort(keys, kind="stable")]
    half = degree // 2
    out: dict[int, set[int]] = {c: set() for c in clients}
    # A loop over clients and offsets (n * k/2 pairs), not over vector elements.
    for pos, c in enumerate(order):
        for off in range(1, half + 1):
            other = order[(pos + off) % n]
            out[c].add(other)
            out[other].add(c)
    return {c: frozenset(v) for c, v in out.items()}
