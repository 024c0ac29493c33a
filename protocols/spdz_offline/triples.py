"""Authenticated values, input masks and (matrix) Beaver triples with the SPDZ2k sacrifice.

Values (:func:`produce_values`): every party draws its shares of ``R`` random values and the
values of its own input masks; all are authenticated in one vOLE batch
(:func:`protocols.spdz_offline.vole.authenticate`) with one extra random mask ``x_0``; after a
coin toss the parties open ``y = sum chi_e x_e + x_0`` (``chi_e`` in Z_2^64), which the batch's
MAC check covers. An input mask of party ``o`` is shared as ``(r, 0, ..., 0)``: ``o`` knows
``r`` (uniform in Z_2^128) and authenticates it itself.

Triples (:func:`produce_matrix_triples`; scalar triples are the ``1 x 1 x 1`` case, computed
elementwise). For ``count`` triples ``A (m, k)``, ``B (k, n)``:

1. every party draws its shares ``A_i``, ``A'_i`` (the sacrificed twin) uniformly and, for every
   entry of ``B``, ``tau`` bits;
2. multiply (:func:`protocols.spdz_offline.vole.multiply`, every ordered pair): the sender
   vector of entry ``(l, c)`` of ``B`` is the column ``l`` of ``A_i`` and of ``A'_i`` (the vOLE
   on columns: ``k n tau`` OTs per matrix, not ``m k n tau``); the receivers' bits become
   ``B_j`` through the coin-tossed extractor; ``C = A B`` and ``C' = A' B`` follow from the
   local products ``A_i B_i`` and the cross terms;
3. authenticate ``A, A', B, C, C'`` (vOLE, one batch, its random-combination check);
4. sacrifice (SPDZ2k): a coin toss gives ``t`` in Z_2^64 per triple; open
   ``rho = t A - A'`` and claim ``[z] = t [C] - [C'] - rho [B]`` is zero;
5. one MAC check over ``y`` (step 3), ``rho`` and the zero claims. If ``C != A B mod 2^64``
   the check passes with probability about ``2^-(s - log2 s)`` (the SPDZ2k sacrifice lemma):
   ``t e - e'`` must vanish modulo ``2^(64 + j)`` and the MAC check must miss an error at bit
   ``64 + j``; the two probabilities multiply to at most ``2^-(s+1)`` for each ``j``.

Rounds per batch: 4 per multiplication OT call (2 OT rounds, 2 for its extractor coin toss),
2 per vOLE call (16,384 values each), 2 + 1 (coin, open ``y``), 2 + 1 (coin, open ``rho``),
4 (MAC check).
Bytes per scalar triple and ordered pair: ``48 tau`` (IKNP matrix ``16 tau`` + corrections
``32 tau``) + ``5 * 1024`` (vOLE) + 16 (``rho``); see :func:`theoretical_bytes_per_triple`.
"""

from __future__ import annotations

import numpy as np

from mpc import ring128 as r128
from mpc.ring128 import Z128
from protocols.spdz.shares import AuthShare

from protocols.spdz_offline.coin import Checker, coin_toss
from protocols.spdz_offline.vole import Context, authenticate, multiply, uniform

__all__ = ["produce_values", "produce_matrix_triples", "theoretical_bytes_per_triple", "combine"]


def theoretical_bytes_per_triple(n_parties: int, tau: int) -> int:
    """Payload bytes all parties send per scalar triple (large batches, framing excluded).

    Every ordered pair carries ``tau`` OTs (``16 tau`` bytes of IKNP matrix and ``32 tau`` of
    corrections for ``(a, a')``), the vOLE of five values (``5 * 64 * 16``) and ``rho``
    (16 bytes).
    """
    pairs = n_parties * (n_parties - 1)
    return pairs * (48 * tau + 5 * 64 * 16 + 16)


def combine(x: AuthShare, chi: np.ndarray) -> AuthShare:
    """``[sum_e chi_e x_e]`` over a flat shared vector, ``chi`` in Z_2^64 (uint64)."""
    return AuthShare(r128.sum(r128.mul_u64(x.data, chi), axis=1)).reshape((1,))


async def produce_values(
    ctx: Context, checker: Checker, shared: Z128, private: dict[int, int], own_private: Z128, name: str
) -> tuple[AuthShare, dict[int, AuthShare]]:
    """Authenticate shared values and private (input-mask) values, and open their check value.

    Args:
        ctx: the production context.
        checker: the batch's checker (it will MAC-check the opened ``y``).
        shared: this party's shares of ``L`` shared values (flat).
        private: owner -> number of its private values (the same at every party).
        own_private: this party's private values (flat, ``private[me]`` of them).
        name: a round-name prefix.

    Returns:
        ``(shared_auth, private_auth)``: the ``L`` shared values with MACs and, per owner, its
        private values (``(r, 0, ..., 0)`` shares) with MACs.
    """
    me, n = ctx.party_id, ctx.session.n_parties
    size = shared.shape[0]
    own = r128.concatenate([shared, uniform(ctx.session, (1,)), own_private])
    lengths = {k: size + 1 + int(private.get(k, 0)) for k in range(n)}
    mine, theirs = await authenticate(ctx, own, lengths)
    head = slice(0, size + 1)
    macs = mine[head]
    for k in sorted(theirs):
        macs = r128.add(macs, theirs[k][head])
    both = AuthShare.from_parts(own[head], macs)
    priv: dict[int, AuthShare] = {}
    for owner in sorted(private):
        count = int(private[owner])
        if count == 0:
            continue
        tail = slice(size + 1, size + 1 + count)
        if owner == me:
            priv[owner] = AuthShare.from_parts(own[tail], mine[tail])
        else:
            priv[owner] = AuthShare.from_parts(r128.zeros((count,)), theirs[owner][tail])
    rng = await coin_toss(ctx.session, f"{name}-chi")
    y = AuthShare(both.data[:, size:])  # the mask x_0
    y = _add(y, combine(AuthShare(both.data[:, :size]), rng.uint64(size)))
    for owner in sorted(priv):
        y = _add(y, combine(priv[owner], rng.uint64(priv[owner].size)))
    await checker.open(f"{name}-y", y)
    return AuthShare(both.data[:, :size]), priv


def _add(x: AuthShare, y: AuthShare) -> AuthShare:
    return AuthShare(r128.add(x.data, y.data))


def _bmm(x: Z128, y: Z128) -> Z128:
    """Batched ``x @ y`` over the last two axes (elementwise when both are 1 x 1)."""
    if x.shape[-2:] == (1, 1) and y.shape[-2:] == (1, 1):
        return r128.mul(x, y)
    return r128.matmul(x, y)


def _shared_bmm(public: Z128, x: AuthShare) -> AuthShare:
    """``[public @ x]`` for a public batch of matrices (value and MAC rows alike)."""
    return AuthShare(r128.stack([_bmm(public, x.share), _bmm(public, x.mac)]))


async def produce_matrix_triples(
    ctx: Context, m: int, k: int, n: int, count: int, name: str
) -> tuple[AuthShare, AuthShare, AuthShare]:
    """``count`` checked triples ``A (m, k)``, ``B (k, n)``, ``C = A @ B`` (see the module docstring).

    Returns:
        ``(A, B, C)`` with shapes ``(count, m, k)``, ``(count, k, n)``, ``(count, m, n)``.

    Raises:
        MacCheckFailure: a party cheated in the multiplication, the authentication or the check.
        AbortError: a coin toss was not opened as committed.
    """
    session = ctx.session
    a = uniform(session, (count, m, k))
    a2 = uniform(session, (count, m, k))
    beta = session.prg.bits((count * k * n, ctx.tau))
    # Sender vector of B entry (c, l, col): column l of A_c and of A'_c, i.e. (2, m).
    cols = r128.stack([a, a2], axis=1).transpose(0, 3, 1, 2)  # (count, k, 2, m)
    corr = cols.reshape(count, k, 1, 2 * m).broadcast_to((count, k, n, 2 * m)).reshape(count * k * n, 2 * m)
    b_flat, cross = await multiply(ctx, corr, beta, name)
    b = b_flat.reshape(count, k, n)
    # cross (count*k*n, 2m) -> (count, k, n, 2, m): sum over k -> (count, n, 2, m) -> (count, 2, m, n)
    cross_c = r128.sum(cross.reshape(count, k, n, 2, m), axis=1).transpose(0, 2, 3, 1)
    c = r128.add(_bmm(a, b), cross_c[:, 0])
    c2 = r128.add(_bmm(a2, b), cross_c[:, 1])
    parts = [a, a2, b, c, c2]
    sizes = [p.size for p in parts]
    checker = Checker(session, ctx.key_share, ctx.behaviour)
    flat = r128.concatenate([p.reshape(-1) for p in parts])
    auth, _ = await produce_values(ctx, checker, flat, {}, r128.zeros((0,)), f"{name}-auth")
    shaped = []
    pos = 0
    for p, size in zip(parts, sizes):
        shaped.append(AuthShare(auth.data[:, pos : pos + size]).reshape(p.shape))
        pos += size
    sa, sa2, sb, sc, sc2 = shaped
    rng = await coin_toss(session, f"{name}-sacrifice")
    t = rng.uint64(count).reshape(count, 1, 1)
    rho_share = AuthShare(r128.sub(r128.mul_u64(sa.data, t), sa2.data))
    rho = await checker.open(f"{name}-rho", rho_share)
    z = r128.sub(r128.sub(r128.mul_u64(sc.data, t), sc2.data), _shared_bmm(rho, sb).data)
    checker.claim_zero(AuthShare(z))
    await checker.check()
    return sa, sb, sc
