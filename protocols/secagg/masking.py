"""Masks of SecAgg: self masks and pairwise masks expanded by the AES-CTR PRG, in Z_2^bits.

Client ``u`` with input ``x_u`` sends ``y_u = x_u + PRG(b_u) + sum_{v in P(u)} s(u, v) PRG(k_uv)``
where ``b_u`` is its self-mask seed, ``P(u)`` its partners (its neighbours that shared keys),
``k_uv = k_vu`` the pairwise seed both derive from X25519, and ``s(u, v) = +1`` if ``u < v``
else ``-1``. Pairwise masks cancel in the sum of two partners; the aggregator removes the self
masks of the survivors and the pairwise masks between survivors and clients that dropped after
sharing keys (see :mod:`protocols.secagg.server`). All arithmetic is in the container dtype of
:class:`~protocols.secagg.params.SecAggPlan`, which wraps modulo a multiple of 2^bits.
"""

from __future__ import annotations

import numpy as np

from mpc.prg import PRG
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocols.secagg import crypto
from protocols.secagg.params import SecAggPlan

__all__ = ["expand", "pairwise_seed", "pairwise_sign", "apply_masks"]


def expand(seed: bytes, plan: SecAggPlan) -> np.ndarray:
    """The mask of a 16-byte seed: ``dim`` uniform elements of the container dtype."""
    raw = PRG(seed).buffer(plan.dim * plan.dtype.itemsize)
    return raw.view(plan.dtype)


def pairwise_seed(sk: bytes | X25519PrivateKey, peer_pk: bytes, u: int, v: int, context: bytes) -> bytes:
    """The seed ``k_uv`` shared by clients ``u`` and ``v`` (symmetric in ``u``, ``v``)."""
    shared = crypto.agree(sk, peer_pk)
    lo, hi = (u, v) if u < v else (v, u)
    return crypto.derive(
        shared, "secagg-pairwise-mask", context + crypto.party_bytes(lo, hi), crypto.SEED_BYTES
    )


def pairwise_sign(u: int, v: int) -> int:
    """``+1`` if client ``u`` adds the mask shared with ``v``, ``-1`` if it subtracts it."""
    return 1 if u < v else -1


def apply_masks(
    acc: np.ndarray, plus: list[bytes], minus: list[bytes], plan: SecAggPlan
) -> np.ndarray:
    """Add the masks of the seeds in ``plus`` and subtract those in ``minus``, in place.

    A loop over seeds (parties), each step vectorized over the whole vector.
    """
    for seed in plus:
        acc += expand(seed, plan)
    for seed in minus:
        acc -= expand(seed, plan)
    return acc
