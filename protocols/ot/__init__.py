"""Oblivious transfer: base OT over ristretto255 and IKNP/KOS OT extension, vectorized.

Two parties, a *sender* and a *receiver*, bound to one session. Every call below is a pure
numpy batch: thousands to millions of OTs per call, one message per direction and round.

Quick start (every party of the session runs this, SPMD)::

    from protocols.ot import ot_pair

    ot = await ot_pair(session, sender=0, receiver=1)   # base OTs once; cached per session
    if session.party_id == 0:                            # -> OTExtSender
        r0, r1 = await ot.send_random(n)                 # (n, 16) uint8 each
    elif session.party_id == 1:                          # -> OTExtReceiver
        rc = await ot.recv_random(choices)               # choices (n,) 0/1 -> (n, 16) uint8
    # any other party gets None and allocates no rounds

API (``protocols.ot``):

``await ot_pair(session, sender, receiver, *, delta=None, active=True)``
    -> :class:`OTExtSender` at ``sender``, :class:`OTExtReceiver` at ``receiver``, ``None``
    elsewhere. The first call for a (sender, receiver) pair runs the 128 base OTs (2 rounds);
    later calls with the same pair return the same object from ``session.resources`` (no
    rounds), so base OTs are done once per (session, pair, direction). ``delta``: the sender's
    global correlation (16 bytes / (16,) uint8, e.g. a free-XOR Delta); default random with
    its least significant bit (bit 0 of byte 0) set to 1, as point-and-permute needs.
    ``active``: run the KOS consistency check (see :mod:`protocols.ot.extension`); both sides
    must agree.

``await OTExtSender.setup(session, peer, *, delta=None, active=True)`` /
``await OTExtReceiver.setup(session, peer, *, active=True)``
    the same objects without the cache (one fresh set of base OTs per call).

Paired calls (the sender's method and the receiver's method of the same row must be called in
the same order on both sides; calls may overlap with ``asyncio.gather`` if *started* in the
same order). ``n`` is the batch size; choices are an (n,) array of 0/1 (bool or any integer
dtype). Messages: R->S is the IKNP matrix, 16 B per OT (active mode adds 192-319 padding rows,
3-5 KB, and 32 B of KOS check per call); S->R (second round) only for the chosen-message and
ring variants. Batches above 4096 rows are computed in a worker thread (numpy releases the GIL),
so the event loop keeps moving bytes meanwhile; peak memory is ~100 bytes per OT of a call, so
split very large jobs into calls of ~2^20-2^22 OTs.

==================================================  ==============================================  ======
sender                                              receiver                                        rounds
==================================================  ==============================================  ======
``send_random(n, nbytes=16) -> (r0, r1)``           ``recv_random(c, nbytes=16) -> r_c``            1
  (n, nbytes) uint8 each                              (n, nbytes) uint8
``send_correlated(n) -> q``; ``sender.delta``        ``recv_correlated(c) -> t``                     1
  (n, 16) uint8, global Delta (16,) uint8             ``t = q ^ c * delta`` (n, 16) uint8
``send_chosen(m0, m1)`` -> None                      ``recv_chosen(c, nbytes=None) -> m_c``         2
  m0, m1: (n, L) uint8, any L >= 1                    (n, L) uint8
``send_correlated_ring(x, ring="z2_64") -> s``       ``recv_correlated_ring(c, shape, ring) -> v``   2
  x: (n, *shape) uint64 (z2_64) or                    ``v = s + c * x`` in the ring (additive
  (n, *shape, 2) uint64 limbs [lo, hi] (z2_128)       sharing of c*x: receiver v, sender -s)
==================================================  ==============================================  ======

Rounds are those of small and medium batches; an active batch of 2^20 rows or more takes the
KOS challenge interactively (two more message flights, no hash over the IKNP matrix; see
:mod:`protocols.ot.extension`). The ring calls also take ``out=`` (a reusable buffer for ``s``
/ ``v``) and the sender ``repeat=k`` (every row of ``x`` sent in ``k`` consecutive OTs, without
materializing the repeated rows; the receiver's ``c`` covers all ``n * k`` OTs).

Outputs are fresh per call: random OT and chosen-message pads are the tweakable
correlation-robust hash (:mod:`protocols.ot.crhash`) of the IKNP rows, tweaked by a per-pair
OT counter, so no two OTs of a pair ever use the same tweak. Correlated OT returns the raw IKNP
rows (Delta-OT, as free-XOR garbling wants: the garbler's zero labels are ``q``, the
evaluator's labels ``t``).

Labels and bits: a 16-byte row is little-endian; its "least significant bit" (the permute bit of
free-XOR labels) is bit 0 of byte 0; bit ``j`` of ``delta`` is bit ``j % 8`` of byte ``j // 8``.

Security (details in :mod:`protocols.ot.base` and :mod:`protocols.ot.extension`): base OTs are
actively secure (Masny-Rindal endemic OT; ROM + CDH on ristretto255). With ``active=True``
(default) the extension is actively secure against either party for random and chosen OT
(KOS), and a "leaky Delta-OT" for correlated OT (a cheating receiver may guess k bits of Delta,
caught with probability 1 - 2^-k); with ``active=False`` it is passively secure only.

Lower layers, for protocols that build their own extension (e.g. KKRT OPRF):

- :mod:`protocols.ot.base`: ``await base_ot_send(session, peer, n) -> (k0, k1)`` and
  ``await base_ot_recv(session, peer, choices) -> k_c``: n random base OTs, keys (n, 16) uint8
  (Masny-Rindal endemic OT over ristretto255, 2 rounds).
- :mod:`protocols.ot.crhash`: ``CRHash`` (tweakable correlation-robust hash from fixed-key AES,
  Guo-Katz-Wang-Yu 2020) with ``hash(x, tweaks)`` on (n, 16) uint8 and ``hash_wide(x, tweaks,
  nbytes)``; ``SeedExpander`` (one AES-CTR stream per base seed, stateful);
  ``transpose_bits(m)`` ((w, n/8) -> (n, w/8) bit-matrix transpose, w and n multiples of 8);
  ``ggm_expand(seeds, depth)`` (GGM tree leaves).
- :mod:`protocols.ot.gf128`: GF(2^128) arithmetic used by the KOS check.
- :mod:`protocols.ot.ringot`: the fused, cache-blocked derive step of ring-correlated OT (pure).

Errors: a peer's malformed message (wrong kind, shape, dtype, invalid or identity group element)
raises :class:`~mpc.errors.ProtocolViolation`; a failed KOS consistency check raises
:class:`~mpc.errors.AbortError` at the sender (the receiver then times out with
:class:`~mpc.errors.PeerUnavailable` on the next round it waits for, if any); bad local input
raises :class:`~mpc.errors.ConfigError`.
"""

from __future__ import annotations

from protocols.ot.base import base_ot_recv, base_ot_send
from protocols.ot.crhash import CRHash, SeedExpander, ggm_expand, make_tweaks, transpose_bits
from protocols.ot.extension import KAPPA, OTExtReceiver, OTExtSender, Ring, ot_pair

__all__ = [
    "KAPPA",
    "CRHash",
    "OTExtReceiver",
    "OTExtSender",
    "Ring",
    "SeedExpander",
    "base_ot_recv",
    "base_ot_send",
    "ggm_expand",
    "make_tweaks",
    "ot_pair",
    "transpose_bits",
]
