"""Dealer-free SPDZ2k preprocessing from oblivious transfer (the offline phase).

The parties make their own correlated randomness: no party ever holds another's shares or the
MAC key. :class:`DealerFreePreprocessing` implements the engine's
:class:`~protocols.spdz.preprocessing.SpdzPreprocessing` on material that
:meth:`~DealerFreePreprocessing.produce` generates among all parties, in large vectorized
batches, by OT-based multiplication over Z_2^128 for every ordered pair of parties (k = 64,
s = 64, as the engine)::

    provider = await DealerFreePreprocessing.create(session)   # MAC key shares, base OTs
    need = Requirements(triples=10_000, input_masks={0: 100}, truncation_pairs={16: 50})
    await provider.produce(need)                                  # every party, same order
    spdz.setup(session, provider)                                 # the online phase as usual

    # or overlap production with the online phase:
    task = provider.produce_in_background(more)
    ...                                                           # online work on what exists
    await provider.wait_for(more)                                 # before it is consumed

Papers: Cramer, Damgard, Escudero, Scholl, Xing, "SPDZ2k: Efficient MPC mod 2^k for Dishonest
Majority" (CRYPTO 2018: authentication by vOLE, triple generation, the sacrifice with s extra
bits); Keller, Orsini, Scholl, "MASCOT" (CCS 2016: the structure — COPE/vOLE with the MAC key,
Gilboa products, combining with a random public extractor, sacrifice); Damgard, Escudero,
Frederiksen, Keller, Scholl, Volgushev, "New Primitives for Actively-Secure MPC over Rings" (S&P
2019: random bits from square roots). Modules: :mod:`.vole` (authentication and
multiplication), :mod:`.triples` (values, input masks, triples, matrix triples, sacrifice),
:mod:`.bits` (bits, truncation pairs), :mod:`.coin` (coin tossing, the batch MAC check),
:mod:`.provider` (pools, accounting, scheduling), :mod:`.store` (persistence), :mod:`.job` (what
a node runs before an SPDZ job: :func:`preprocessing_for_job`).

Security model: active (malicious) adversary corrupting up to n - 1 of the n parties, static,
security with abort, no fairness; the OT extension with its KOS check (``active=True``) and
the base OTs as in :mod:`protocols.ot`. What is actively secure, exactly:

- MAC key: each ``alpha_i`` is drawn locally and never leaves its party; ``alpha`` is never
  reconstructed. A party that cheats in the authentication vOLE can learn ``c`` bits of an
  honest ``alpha_i`` only with probability ``2^-c`` of not being caught (the SPDZ2k/MASCOT
  leakage); forging a MAC still needs the other bits.
- Authenticated values and input masks: a random linear combination (coefficients in Z_2^64
  from a coin toss) with a random mask is opened and MAC-checked per batch; a party that
  authenticated inconsistently is caught except with probability ~2^-57.9 (the MAC check).
  The owner of an input mask knows its value exactly (it authenticates it itself); a
  malicious owner can only choose its own mask, which changes nothing for the others.
- Triples and matrix triples: every batch is sacrificed against twins ``(A', B, C' = A' B)``
  and MAC-checked; a triple (or matrix entry) wrong modulo 2^64 survives with probability
  about ``2^-(s - log2 s)``. A party may make triples wrong in the high 64 bits: harmless,
  only ``x mod 2^64`` carries data (the engine's convention). Selective failure on the OT
  receiver's bits is neutralized by extraction: ``tau`` (256) bits per entry combined by a
  coin-tossed universal hash; the extracted values are within ``2^-(tau - 128 - c)/2``
  (2^-64 at tau = 256 without leakage) of uniform per entry, and the entries of one OT call
  (at most 4096 scalar triples) share the hash, which adds up to ``2^-52`` per call, where
  ``c`` is what a cheater learned at abort probability 1 - 2^-c.
- Bits: square roots of opened squares of triples; correct (in {0, 1} modulo 2^64) unless an
  opened value is wrong at bit 64 or 65 and the MAC check misses it (~2^-57); uniform, and the
  opened values (``a - b``, ``u^2``) reveal nothing about the bit.
- Truncation pairs: local linear combinations of 64 checked bits and a checked random value:
  exactly the dealer's definition, as secure as the bits.
- Coin tosses: commit-then-open with SHA-256 (random oracle); a party can abort, not bias.
- Every opened value is hashed into the transcript checked by the MAC check, so inconsistent
  openings (different shares to different parties) are caught.

Not provided / not actively secure:

- Abort is not attributable: a failed check raises
  :class:`~mpc.errors.MacCheckFailure` (or :class:`~mpc.errors.AbortError` for a bad coin
  opening) at every honest party but does not say who cheated. After any failure the provider
  refuses to hand out anything (its material and key may have been probed).
- A cheating OT *receiver* in the authentication vOLE is caught by the OT layer's KOS check
  (AbortError at the sender only; the others then time out: PeerUnavailable).
- Persistence (:mod:`.store`): encrypted and authenticated at rest with the node's key and
  claimed at most once per file; a node operator who restores an old copy of every party's
  file could replay material (documented there).
- The material leaks nothing when used as the engine uses it; using a triple twice (e.g. two
  providers loaded from copies of one store) breaks privacy of that job.

Costs (``n`` parties, per ordered pair, large batches; IKNP padding and framing excluded):
per scalar triple ``48 tau + 5 * 1024 + 16`` bytes (``tau`` OTs; 17,424 bytes at tau = 256),
i.e. ``n (n - 1) * 17,424`` bytes in all (:func:`.triples.theoretical_bytes_per_triple`); per
bit one triple plus 32 bytes; per truncation pair 64 bits and one random value; per input mask
or random value ``1024`` bytes (vOLE); per ``(m, k) x (k, n)`` matrix triple ``k n tau`` OTs
(``16 k n tau + 32 m k n tau`` bytes) plus the vOLE of its ``2 m k + k n + 2 m n`` entries.
Rounds per batch (8192 scalar triples by default): 4 per multiplication OT call (2 OT + 2 coin;
2 calls), 2 per authentication OT call (3 calls), 3 + 3 for the two check coin tosses and
opens, 4 for the MAC check: about 23, independent of n; plus 2 + 2 at creation (store id coin
toss, base OTs). Bits add 2 opens and a 4-round MAC check per batch. Preprocessing consumed: none (this *is* the
preprocessing); the base OTs are run once per provider and ordered pair.
"""

from __future__ import annotations

from protocols.spdz_offline.job import preprocessing_for_job
from protocols.spdz_offline.provider import DEFAULT_BATCH, DEFAULT_LANES, DEFAULT_TAU, DealerFreePreprocessing
from protocols.spdz_offline.store import load, save, try_load
from protocols.spdz_offline.triples import theoretical_bytes_per_triple
from protocols.spdz_offline.vole import Behaviour

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_LANES",
    "DEFAULT_TAU",
    "Behaviour",
    "DealerFreePreprocessing",
    "load",
    "preprocessing_for_job",
    "save",
    "theoretical_bytes_per_triple",
    "try_load",
]
