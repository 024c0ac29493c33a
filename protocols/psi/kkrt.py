"""Two-party OT-based PSI: KKRT batched OPRF over cuckoo hashing.

The *receiver* ``R`` (set ``X``) learns which of its rows are in the *sender* ``S``'s set ``Y``;
with ``S`` as a receiver too (or in *join* mode) ``R`` then tells ``S`` the matching OPRF values.
Follows Kolesnikov, Kumaresan, Rosulek, Trieu, *Efficient Batched Oblivious PRF with
Applications to Private Set Intersection* (ACM CCS 2016), section 5, with the code, hash and
parameters below.

Notation: ``K = 512`` code bits; the code word of identifier ``x`` is its 64-byte salted SHA-512
digest ``C(x)`` (a random oracle, hence a pseudorandom code: two distinct words differ in
fewer than 128 of the 512 bits with probability about 2^-96 per pair, in fewer than 64 with about
2^-233, so the OPRF values of other inputs always hide enough unknown bits of ``s``);
``H(j, v) = BLAKE2b(j || v)`` truncated to ``l`` bytes, ``l = ceil((40 + log2(3 |X| |Y|)) / 8)``
(so a false positive has probability at most 2^-40 per job).

1. *hello* (in :mod:`protocols.psi.api`): parameters and set sizes.
2. *cuckoo* — ``R`` places every ``x`` in one of its three bins ``h_0(x), h_1(x), h_2(x)`` of
   a table of ``m ≈ 1.27 |X|`` bins (public hash functions of ``C(x)`` and a seed number; it
   retries with the next seed in the negligible case that insertion fails), sends the seed
   number (round ``seed``).
3. *base OTs* — ``K`` random OTs (Masny-Rindal, :mod:`protocols.ot.base`) with reversed roles:
   ``S`` chooses random bits ``s`` and gets ``k_{s_i,i}``; ``R`` gets both ``k_{0,i}, k_{1,i}``.
4. *OPRF* (stream ``u``, in blocks of bins) — ``R`` expands ``T_i = G(k_{0,i})``, sends
   ``U_i = T_i ^ G(k_{1,i}) ^ c^i`` (``c^i`` bit ``i`` of the code words of its bins; random
   words for empty bins); ``S`` computes ``Q_i = G(k_{s_i,i}) ^ s_i U_i``, so row ``j`` of
   ``Q`` is ``q_j = t_j ^ (c_j & s)``. The OPRF of bin ``j`` is ``F_j(y) = H(j, q_j ^ (C(y) & s))``
   and ``R``'s output for its bin is ``H(j, t_j) = F_j(x_j)``.
5. *evaluate* (rounds ``f0``, ``f1``, ``f2``) — ``S`` sends, for ``i = 0, 1, 2``, the values
   ``F_{h_i(y)}(y)`` of all ``y`` in ``Y``, each list shuffled with a fresh CSPRNG permutation.
6. *match* — ``x`` placed in bin ``j`` by ``h_i`` is in ``Y`` iff ``H(j, t_j)`` is in list ``i``.
   If ``S`` receives, ``R`` sends the matching values sorted (round ``back``); ``S`` finds its
   rows by the values; sorted value order is the common *join* order.

Security model: semi-honest (passive), 2 parties; random-oracle model for ``C`` and ``H``,
correlation robustness as in KKRT, base OTs as in :mod:`protocols.ot.base`. ``R`` learns
``|Y|`` and ``X ∩ Y`` (its rows); ``S`` learns ``|X|`` (through ``m``), the seed number
(nonzero only when cuckoo insertion failed for the first seed, probability well below 2^-30,
a negligible leak about ``X``), and ``X ∩ Y`` only if it receives. Cardinality-only output is
not offered by this protocol (``R`` necessarily learns which of its rows match); use ECDH.

Cost (``m = 1.27 |X|``): ``R`` sends ``64 m`` bytes (``U``) plus ``64 K`` for the base OTs; ``S``
sends ``3 l |Y|`` bytes; ``R`` computes ``|X|`` hashes ``H``, ``S`` ``3 |Y|`` (one Python call of
BLAKE2b each: the only per-element loop, justified as hashlib has no batch interface), plus
vectorized AES-CTR expansion (``2 K m`` bits at ``R``, ``K m`` at ``S``) and bit transposes.
Rounds: hello, seed, 2 (base OTs), ``ceil(m / B)`` stream messages (``B`` bins each), 3, and
``back`` when ``S`` receives. No preprocessing.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError, ProtocolViolation
from mpc.session import Session
from protocols.ot.base import base_ot_recv, base_ot_send
from protocols.ot.crhash import SeedExpander, transpose_bits
from protocols.psi.config import Mode
from protocols.psi.identifiers import DIGEST_BYTES, PreparedSet
from protocols.psi.rowsets import byte_order, find_rows, has_repeats
from protocols.psi.streams import Patience, n_chunks, permutation, run_all

__all__ = [
    "CODE_BITS",
    "HASHES",
    "kkrt_psi",
    "table_size",
    "output_bytes",
    "bin_indices",
    "cuckoo_insert",
    "oprf_hash",
]

CODE_BITS = 8 * DIGEST_BYTES
HASHES = 3
BLOCK_BINS = 1 << 13
MAX_SEEDS = 64
_MIX = np.uint64(0x9E3779B97F4A7C15)


# -- pure functions ---------------------------------------------------------------------------


def table_size(n_receiver: int) -> int:
    """Cuckoo bins for ``n_receiver`` items: ``1.27 n`` (3 hash functions), a multiple of 8, >= 64."""
    return max(64, -(-math.ceil(1.27 * n_receiver) // 8) * 8)


def output_bytes(n_receiver: int, n_sender: int) -> int:
    """OPRF output length ``l`` so that false positives have probability <= 2^-40."""
    pairs = max(1, HASHES * n_receiver * n_sender)
    return min(32, max(8, math.ceil((40 + math.log2(pairs)) / 8)))


def bin_indices(digests: np.ndarray, m: int, seed: int) -> np.ndarray:
    """``(n, 3)`` int64 bins ``h_i(x)`` of every digest row for hash seed number ``seed``.

    ``h_i`` mixes 64-bit word ``i`` of the digest (a random-oracle output) with a key derived
    from ``seed`` and ``i`` and reduces it mod ``m``.
    """
    words = np.ascontiguousarray(digests[:, : 8 * HASHES]).view("<u8").reshape(-1, HASHES)
    keys = np.frombuffer(hashlib.sha256(b"mpc-psi-kkrt-bins\x00" + seed.to_bytes(4, "little")).digest()[: 8 * HASHES], dtype="<u8")
    mixed: np.ndarray = (words ^ keys) * _MIX
    out: np.ndarray = ((mixed >> np.uint64(11)) % np.uint64(m)).astype(np.int64)
    return out


def cuckoo_insert(bins: np.ndarray, m: int, max_rounds: int = 1000) -> tuple[np.ndarray, np.ndarray] | None:
    """Place every item in one of its bins, at most one item per bin (parallel cuckoo insertion).

    Each round, every homeless item claims the bin of its current hash function; one claimant
    per bin wins and evicts the previous occupant; losers and evicted items move on to their
    next function. All numpy, one iteration per round.

    Returns:
        ``(table, choice)``: item index per bin (-1 empty) and the function each item uses;
        ``None`` if some item is still homeless after ``max_rounds`` rounds.
    """
    n = bins.shape[0]
    table = np.full(m, -1, dtype=np.int64)
    choice = np.zeros(n, dtype=np.int64)
    active = np.arange(n, dtype=np.int64)
    for _ in range(max_rounds):
        if active.size == 0:
            return table, choice
        wanted = bins[active, choice[active]]
        claimed, first = np.unique(wanted, return_index=True)
        losers = np.ones(active.size, dtype=bool)
        losers[first] = False
        evicted = table[claimed]
        table[claimed] = active[first]
        moving = np.concatenate([active[losers], evicted[evicted >= 0]])
        choice[moving] = (choice[moving] + 1) % HASHES
        active = moving
    return None


def oprf_hash(bins: np.ndarray, values: np.ndarray, nbytes: int) -> np.ndarray:
    """``H(j, v)`` for each bin index ``j`` and 64-byte row ``v``: (n, nbytes) uint8."""
    data = np.empty((values.shape[0], 8 + DIGEST_BYTES), dtype=np.uint8)
    data[:, :8] = bins.astype("<u8").reshape(-1, 1).view(np.uint8)
    data[:, 8:] = values
    blob = data.tobytes()
    width = 8 + DIGEST_BYTES
    base = hashlib.blake2b(digest_size=nbytes, person=b"mpc-psi-kkrt")

    def one(k: int) -> bytes:
        h = base.copy()  # cheaper than constructing with keyword parameters each time
        h.update(blob[k : k + width])
        return h.digest()

    # One hashlib call per row: hashlib has no batch interface (see the module docstring).
    out = b"".join([one(k) for k in range(0, len(blob), width)])
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, nbytes)


def _check_block(value: object, shape: tuple[int, int], sender: int, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.shape != shape:
        got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
        raise ProtocolViolation(f"party {sender} sent a malformed {what}: {got}, expected uint8 {shape}")
    return np.ascontiguousarray(value)


# -- the protocol -----------------------------------------------------------------------------


async def kkrt_psi(
    session: Session,
    prepared: PreparedSet,
    *,
    mode: Mode,
    receivers: Sequence[int],
    sizes: Sequence[int],
    patience: Patience,
) -> np.ndarray | None:
    """Steps 2-6 of the module recipe (the hello is done by the caller).

    The OPRF receiver is the lowest receiver id.

    Returns:
        At a receiver, its matching rows (ascending; join: in the common order); else ``None``.

    Raises:
        ConfigError: cardinality mode.
        ProtocolViolation: a malformed message, or result values outside this party's set.
        PeerUnavailable: the peer stayed silent past the deadline.
    """
    if mode == "cardinality":
        raise ConfigError("the OT-based PSI reveals matching rows; use protocol='ecdh' for cardinality")
    r_id = min(receivers)
    me = session.party_id
    peer = 1 - me
    s_receives = (1 - r_id) in receivers
    n_r, n_s = sizes[r_id], sizes[1 - r_id]
    m = table_size(n_r)
    ell = output_bytes(n_r, n_s)
    if me == r_id:
        return await _receiver(session, prepared, peer, m, ell, n_s, mode, s_receives, patience)
    return await _sender(session, prepared, peer, m, ell, n_r, mode, s_receives, patience)


async def _receiver(
    session: Session, prepared: PreparedSet, peer: int, m: int, ell: int, n_s: int, mode: Mode, s_receives: bool, patience: Patience
) -> np.ndarray:
    digests = prepared.digests
    placed = None
    seed = 0
    for seed in range(MAX_SEEDS):
        placed = cuckoo_insert(bin_indices(digests, m, seed), m)
        if placed is not None:
            break
    if placed is None:
        raise ConfigError("cuckoo hashing failed for every seed (this should never happen)")
    table, choice = placed
    await session.round("seed").send(peer, seed)
    k0, k1 = await base_ot_send(session, peer, CODE_BITS)
    codes = session.prg.buffer(m * DIGEST_BYTES).reshape(m, DIGEST_BYTES)  # empty bins: random words
    full = table >= 0
    codes[full] = digests[table[full]]
    e0, e1 = SeedExpander(k0), SeedExpander(k1)
    mine = np.empty((m, ell), dtype=np.uint8)
    for k in range(n_chunks(m, BLOCK_BINS)):
        lo, hi = k * BLOCK_BINS, min(m, (k + 1) * BLOCK_BINS)
        t_cols = e0.next((hi - lo) // 8)
        u = t_cols ^ e1.next((hi - lo) // 8) ^ transpose_bits(codes[lo:hi])
        await session.round("u").send(peer, u)
        occupied = np.flatnonzero(full[lo:hi])
        mine[lo + occupied] = oprf_hash(lo + occupied, transpose_bits(t_cols)[occupied], ell)
    lists = []
    for i in range(HASHES):
        got = await patience.recv(session.round(f"f{i}"), peer)
        lists.append(_check_block(got, (n_s, ell), peer, f"OPRF list {i}"))
    bins = np.flatnonzero(full)
    items = table[bins]
    hit = np.zeros(bins.shape[0], dtype=bool)
    for i in range(HASHES):
        sel = choice[items] == i
        hit[sel] = find_rows(mine[bins[sel]], lists[i]) >= 0
    values = mine[bins[hit]]
    order = byte_order(values)
    rows = prepared.rows[items[hit]][order]
    if s_receives:
        await session.round("back").send(peer, np.ascontiguousarray(values[order]))
    return rows.astype(np.int64) if mode == "join" else np.sort(rows).astype(np.int64)


async def _sender(
    session: Session, prepared: PreparedSet, peer: int, m: int, ell: int, n_r: int, mode: Mode, s_receives: bool, patience: Patience
) -> np.ndarray | None:
    seed = await patience.recv(session.round("seed"), peer)
    check_int(
        seed, "cuckoo seed", lo=0, hi=MAX_SEEDS - 1, error=ProtocolViolation, message=f"party {peer} sent an invalid cuckoo seed"
    )
    s_bits = session.prg.bits(CODE_BITS)
    ks = await base_ot_recv(session, peer, s_bits)
    s_bytes = np.packbits(s_bits, bitorder="little")
    s_mask = (np.uint8(0) - s_bits.astype(np.uint8))[:, None]  # 0x00 or 0xFF per OT
    es = SeedExpander(ks)
    n = prepared.size
    bins = bin_indices(prepared.digests, m, seed).reshape(-1)  # pair p: item p // 3, function p % 3
    order = np.argsort(bins, kind="stable")
    bounds = np.searchsorted(bins[order], np.arange(0, m + BLOCK_BINS, BLOCK_BINS))
    masked_codes = prepared.digests & s_bytes
    values = np.empty((HASHES * n, ell), dtype=np.uint8)
    for k in range(n_chunks(m, BLOCK_BINS)):
        lo, hi = k * BLOCK_BINS, min(m, (k + 1) * BLOCK_BINS)
        u = _check_block(await patience.recv(session.round("u"), peer), (CODE_BITS, (hi - lo) // 8), peer, "OPRF block")
        q = transpose_bits(es.next((hi - lo) // 8) ^ (u & s_mask))
        pairs = order[bounds[k] : bounds[k + 1]]
        pb = bins[pairs]
        values[pairs] = oprf_hash(pb, q[pb - lo] ^ masked_codes[pairs // HASHES], ell)
    per_function = values.reshape(n, HASHES, ell)
    await run_all(*(
        session.round(f"f{i}").send(peer, np.ascontiguousarray(per_function[permutation(session.prg, n), i]))
        for i in range(HASHES)
    ))
    if not s_receives:
        return None
    back = await patience.recv(session.round("back"), peer)
    if not isinstance(back, np.ndarray) or back.ndim != 2 or back.shape[0] > min(n, n_r):
        raise ProtocolViolation(f"party {peer} sent a malformed result")
    back = _check_block(back, (back.shape[0], ell), peer, "result")
    if has_repeats(back):
        raise ProtocolViolation(f"party {peer} sent repeated result values")
    # Look the values up among this party's (item, bin) pairs, each pair once: an item whose
    # functions share a bin has the same value under both.
    grid = bins.reshape(n, HASHES)
    once = np.ones((n, HASHES), dtype=bool)
    once[:, 1] = grid[:, 1] != grid[:, 0]
    once[:, 2] = (grid[:, 2] != grid[:, 0]) & (grid[:, 2] != grid[:, 1])
    pairs_once = np.flatnonzero(once.reshape(-1))
    at = find_rows(back, values[pairs_once])
    if (at < 0).any():
        raise ProtocolViolation(f"party {peer} sent result values outside this party's set")
    rows = prepared.rows[pairs_once[at] // HASHES]
    return rows.astype(np.int64) if mode == "join" else np.sort(rows).astype(np.int64)
