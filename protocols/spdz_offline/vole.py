"""OT-based products of the offline phase: MAC authentication (vOLE) and Gilboa multiplication.

Both run over every ordered pair of parties on the OT extension's additively correlated OT
(:meth:`protocols.ot.OTExtSender.send_correlated_ring`, Z_2^128): the OT *receiver* holds bits,
the *sender* a vector of ring elements ``x``, and they end with an additive sharing of
``bit * x`` (receiver ``v = s + bit * x``, sender ``-s``).

Authentication (:func:`authenticate`; SPDZ2k's vOLE, after MASCOT's COPE). The key holder ``k``
chooses the 64 bits of its MAC key share ``alpha_k``; the value holder ``j`` sends
``2^l x_j`` in OT ``l``. Summed over ``l`` the outputs share ``alpha_k * x_j``; with
``alpha_j * x_j`` computed locally, every party's shares of ``alpha * x`` follow for
``x = sum_j x_j``. A batch of ``L`` values is one OT call of 64 OTs of ``L`` elements each:
``64 * 16 L`` bytes from ``j`` to ``k`` (+ the IKNP matrix of 64 OTs, ~5 KB per call). Then the
check: a random authenticated mask ``x_0`` is authenticated with the batch, a coin toss gives
``chi`` in Z_2^64, and ``y = sum chi_e x_e + x_0`` is opened and MAC-checked with the rest of
the batch. A value holder that used inconsistent ``x`` in different OTs makes the MACs of the
batch wrong by an amount that depends on the key bits, and passes only by guessing them: it may
learn ``c`` bits of ``alpha_k`` with probability ``2^-c`` (the leakage SPDZ2k and MASCOT allow;
the key keeps ``64 - c`` unknown bits and a forgery still needs them).

Multiplication (:func:`multiply`; Gilboa's OLE with the receiver's input extracted by the
leftover hash lemma, as in the SPDZ2k and MASCOT triple protocols). For each entry the
receiver ``j`` draws ``tau`` random bits ``beta_h`` and chooses them; the sender ``i`` sends the
same vector ``x`` (e.g. ``(a_i, a'_i)``, or a column of a matrix) in all ``tau`` OTs. After the
OTs a coin toss gives public ``r`` in Z_2^128^tau and the receiver's value is
``b_j = sum_h r_h beta_h``; the OT outputs combined with the same ``r`` share ``x * b_j``. A
malicious sender can corrupt the OT of one bit to learn it if the product is later checked
(selective failure): learning ``c`` bits costs abort probability ``1 - 2^-c``, and the
remaining ``tau - c`` bits of min-entropy make ``b_j`` statistically close to uniform
(``h_r(beta) = <r, beta>`` is universal over Z_2^128, so the distance is at most
``2^-((tau - 128 - c) / 2)`` per entry, ``2^-64`` at ``tau = 256`` without leakage; the
entries of one OT call share ``r``, which adds their distances: at most ``N 2^-64`` for ``N``
entries, ``N <= 4096`` for scalar triples, so ``2^-52``).
Cost per entry and ordered pair: ``tau`` OTs, i.e. ``16 tau`` bytes of IKNP matrix from the
receiver and ``16 tau |x|`` bytes of corrections from the sender.

Local compute: the sender hands its vector once per entry to the OT layer, which sends it in
``tau`` OTs (``repeat``) without materializing the repetition; the OT outputs of every call
go into the lane's reused buffers (:class:`Pairs`); the contraction and the vOLE's sums are
compiled loops (:mod:`protocols.spdz_offline.arith`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.ring128 import Z128
from mpc.session import Session
from protocols.ot import OTExtReceiver, OTExtSender, crhash
from protocols.ot.extension import Buffers

from protocols.spdz_offline import arith
from protocols.spdz_offline.arith import key_bits, lincomb_bits, lincomb_signed, sum_ots, to_limbs, vole_correlation
from protocols.spdz_offline.coin import coin_toss, gather_all

__all__ = ["Behaviour", "Pairs", "Context", "setup_pairs", "authenticate", "multiply", "uniform"]

_VOLE_CHUNK = 1 << 14
"""Values per authentication OT call: 64 OTs of 16 KB each side, 16 MB of corrections."""

_MULT_BYTES = 1 << 25
"""Correlation bytes per multiplication OT call (32 MB; the OT layer holds ~3x that)."""


class Behaviour:
    """How this party builds its messages; the honest behaviour changes nothing.

    Tests subclass it to play a malicious party (tamper with OT correlations or opened
    shares) and check that the honest parties catch it with a typed error. Production code
    always uses this class itself.
    """

    def mult_correlation(self, peer: int, x: np.ndarray) -> np.ndarray:
        """The multiplication correlations sent to ``peer``.

        Args:
            peer: the receiver.
            x: (entries, width, 2) uint64 limbs, each entry sent in ``tau`` consecutive OTs.

        Returns:
            ``x`` itself (honest), or other correlations of its shape (one per entry), or
            (entries * tau, width, 2) limbs (one per OT).
        """
        return x

    def vole_correlation(self, peer: int, x: np.ndarray) -> np.ndarray:
        """The authentication correlations sent to ``peer``, (64, L, 2) uint64 limbs."""
        return x

    def opened_share(self, name: str, share: Z128) -> Z128:
        """This party's share of values opened in round ``name``."""
        return share


@dataclass
class Pairs:
    """This party's OT-extension endpoints: ``send[k]`` for me -> k, ``recv[k]`` for k -> me,
    and the lane's reusable OT output buffers (:class:`~protocols.ot.extension.Buffers`: every
    multiplication call writes 32 MB of OT outputs per peer and direction, every vOLE call 16
    MB, dead once contracted; the next call writes over them instead of fresh memory)."""

    send: dict[int, OTExtSender] = field(default_factory=dict)
    recv: dict[int, OTExtReceiver] = field(default_factory=dict)
    buffers: Buffers = field(default_factory=Buffers)


@dataclass
class Context:
    """What a production step needs: session, OT pairs, MAC key share, ``tau``, behaviour."""

    session: Session
    pairs: Pairs
    key_share: np.ndarray
    tau: int
    behaviour: Behaviour

    @property
    def party_id(self) -> int:
        """This party's id."""
        return self.session.party_id


async def setup_pairs(session: Session) -> Pairs:
    """Base OTs for every ordered pair with this party (in parallel; 2 rounds each).

    Uncached (:meth:`OTExtSender.setup`): the producer owns its OT streams, so no other
    protocol's calls can interleave with its calls on a pair. The compiled loops of the OT
    extension and of the product contraction are loaded here (numba, about half a second once
    per process), before production starts.
    """
    crhash.load_kernels()
    arith.load_kernels()
    me = session.party_id
    pairs = Pairs(buffers=Buffers(keep=2 * (session.n_parties - 1)))  # one per concurrent OT call

    async def sender(k: int) -> None:
        pairs.send[k] = await OTExtSender.setup(session, k, active=True)

    async def receiver(k: int) -> None:
        pairs.recv[k] = await OTExtReceiver.setup(session, k, active=True)

    jobs = []
    for i in range(session.n_parties):
        for j in range(session.n_parties):
            if i != j and me == i:
                jobs.append(sender(j))
            elif i != j and me == j:
                jobs.append(receiver(i))
    await gather_all(*jobs)
    return pairs


def uniform(session: Session, shape: tuple[int, ...]) -> Z128:
    """This party's uniform Z_2^128 elements of ``shape`` (from its CSPRNG)."""
    return r128.uniform(session.prg.uint64((*shape, 2)))


def _chunks(total: int, size: int) -> list[slice]:
    return [slice(lo, min(lo + size, total)) for lo in range(0, total, size)] or [slice(0, 0)]


async def authenticate(ctx: Context, own: Z128, lengths: dict[int, int]) -> tuple[Z128, dict[int, Z128]]:
    """MAC shares of every party's vector of values (the vOLE of the module docstring).

    Args:
        ctx: the production context.
        own: this party's values ``x_me`` (flat, length ``lengths[me]``).
        lengths: party id -> length of its vector (public, every party's).

    Returns:
        ``(mine, theirs)``: this party's share of ``alpha * x_me`` (flat) and, per other party
        ``k``, its share of ``alpha * x_k`` (flat, ``lengths[k]``). Unchecked: the caller
        opens a random combination and MAC-checks it.
    """
    me = ctx.party_id
    if own.ndim != 1 or own.shape[0] != lengths[me]:
        raise ConfigError("own values must be a flat vector of the announced length")
    choices = key_bits(ctx.key_share)

    buffers = ctx.pairs.buffers

    async def as_sender(k: int) -> Z128:
        parts = []
        for part in _chunks(lengths[me], _VOLE_CHUNK):
            x = ctx.behaviour.vole_correlation(k, vole_correlation(own[part]))
            buf = buffers.take(x.size)
            s = await ctx.pairs.send[k].send_correlated_ring(x, ring="z2_128", out=buf[: x.size])
            parts.append(sum_ots(s))
            buffers.give(buf)  # (only after success: a failed call may still be writing into it)
        return r128.concatenate(parts)

    async def as_receiver(k: int) -> Z128:
        parts = []
        for part in _chunks(lengths[k], _VOLE_CHUNK):
            width = part.stop - part.start
            words = choices.size * width * 2
            buf = buffers.take(words)
            v = await ctx.pairs.recv[k].recv_correlated_ring(choices, shape=(width,), ring="z2_128", out=buf[:words])
            parts.append(sum_ots(v))
            buffers.give(buf)
        return r128.concatenate(parts)

    others = ctx.session.others
    results = await gather_all(*(as_sender(k) for k in others), *(as_receiver(k) for k in others))
    sent = results[: len(others)]
    mine = r128.mul_u64(own, np.asarray(ctx.key_share, dtype=np.uint64))
    for s in sent:
        mine = r128.sub(mine, s)
    theirs = dict(zip(others, results[len(others) :]))
    return mine, theirs


def _contract(outs: list[np.ndarray], n_sent: int, beta: np.ndarray, r: Z128, width: int) -> tuple[Z128, Z128]:
    """Extract ``b = beta @ r`` and the cross-term shares of one OT call (pure).

    The first ``n_sent`` outputs are this party's sender outputs ``s`` (its share is ``-s``),
    the others its receiver outputs ``v``.
    """
    count, tau = beta.shape
    # (count * tau, w, 2) -> (count, tau, w, 2), contracted with r over tau: the share of the
    # cross terms is sum_recv <r, v> - sum_sent <r, s> = <r, sum v - sum s> (one contraction).
    terms = [np.asarray(out).reshape(count, tau, width, 2) for out in outs]
    cross = lincomb_signed(terms[n_sent:], terms[:n_sent], r)
    return lincomb_bits(beta, r), cross


async def multiply(ctx: Context, corr: Z128, beta: np.ndarray, name: str) -> tuple[Z128, Z128]:
    """Gilboa products of every party's ``corr`` with every other party's extracted bits.

    Args:
        ctx: the production context.
        corr: this party's sender vectors, (N, w) (entry ``e`` multiplies the receivers'
            value of entry ``e``).
        beta: this party's receiver bits, (N, tau) 0/1 uint8.
        name: a round-name prefix for the coin tosses.

    Returns:
        ``(b, cross)``: this party's extracted values ``b_me = beta @ r`` (N,) and its share
        of ``sum_{i != j} corr_i * b_j`` (N, w) over all ordered pairs, excluding the local
        product ``corr_me * b_me``. Unchecked: the caller sacrifices.
    """
    n_entries, width = corr.shape
    tau = ctx.tau
    if beta.shape != (n_entries, tau):
        raise ConfigError("receiver bits must be (N, tau)")
    per_entry = tau * width * 16
    step = max(1, _MULT_BYTES // per_entry)
    others = ctx.session.others
    b_parts: list[Z128] = []
    cross_parts: list[Z128] = []
    buffers = ctx.pairs.buffers
    for index, part in enumerate(_chunks(n_entries, step)):
        x = to_limbs(corr[part])  # (count, w, 2), each row sent in tau OTs: (count * tau, w, 2)
        choices = beta[part].reshape(-1)
        words = choices.size * width * 2
        # One output buffer per OT call (2 (n - 1)), reused across calls (see Buffers).
        taken = [buffers.take(words) for _ in range(2 * len(others))]

        async def as_sender(k: int, buf: np.ndarray, x: np.ndarray = x) -> np.ndarray:
            sent = ctx.behaviour.mult_correlation(k, x)
            repeat = tau if sent.shape[0] == x.shape[0] else 1
            return await ctx.pairs.send[k].send_correlated_ring(sent, ring="z2_128", repeat=repeat, out=buf[:words])

        async def as_receiver(k: int, buf: np.ndarray, choices: np.ndarray = choices) -> np.ndarray:
            return await ctx.pairs.recv[k].recv_correlated_ring(choices, shape=(width,), ring="z2_128", out=buf[:words])

        calls = [as_sender(k, taken[i]) for i, k in enumerate(others)]
        calls += [as_receiver(k, taken[len(others) + i]) for i, k in enumerate(others)]
        outs = await gather_all(*calls)
        del x
        rng = await coin_toss(ctx.session, f"{name}-lhl-{index}")
        r = r128.uniform(rng.uint64((tau, 2)))
        b, cross = _contract(outs, len(others), beta[part], r, width)
        del outs
        for buf in taken:  # (only after success: a failed call may still be writing into one)
            buffers.give(buf)
        b_parts.append(b)
        cross_parts.append(cross)
    return r128.concatenate(b_parts), r128.concatenate(cross_parts)
