"""OT extension: IKNP with the ALSZ optimisations and the KOS consistency check.

From 128 base OTs (:mod:`protocols.ot.base`, run once per session, pair and direction) the
two parties produce any number of OTs with symmetric crypto only, in numpy batches.

Protocol for a batch of ``n`` OTs (Ishai, Kilian, Nissim, Petrank, CRYPTO 2003; Asharov,
Lindell, Schneider, Zohner, CCS 2013 / JoC 2017 for the optimisations; Keller, Orsini, Scholl,
CRYPTO 2015 for the check). ``kappa = 128``; ``Delta`` is the sender's 128-bit global key.

0. *setup* (once): the extension *sender* runs the base OTs as *receiver* with choice bits
   ``Delta`` and gets seeds ``k_{Delta_j, j}``; the extension *receiver* gets both ``k_{0,j},
   k_{1,j}``. Each seed keys an AES-CTR stream (:class:`~protocols.ot.crhash.SeedExpander`)
   that both sides continue from call to call (ALSZ: base OTs on seeds, not on columns).
1. *extend* (round ``ext``, receiver -> sender): pad the choice vector ``c`` with random bits
   to ``m`` = ``n`` rounded up (to a multiple of 128 after adding 192 rows in active mode);
   take the next ``m/8`` bytes of every stream, ``T_j = G(k_{0,j})``, send the columns
   ``u_j = T_j ^ G(k_{1,j}) ^ c`` (a (128, m/8) uint8 matrix, 16 bytes per OT). The sender
   computes ``Q_j = G(k_{Delta_j, j}) ^ Delta_j u_j = T_j ^ Delta_j c``. Transposed
   (:func:`~protocols.ot.crhash.transpose_bits`) into rows: ``q_i = t_i ^ c_i Delta``.
2. *KOS check* (active mode, same message): the challenge ``alpha = SHA-256(context, u)``
   (Fiat-Shamir: the session, the round's tag, ``n`` and all of ``u``; 16 bytes; batches of at
   least 2^20 padded rows take it interactively instead, see below) keys a
   GF(2)-linear polynomial hash ``P(v) = sum_{i<m} h^(m+1-i) v_i`` with ``h = AES_alpha(0)``,
   computed by AES-GCM's GHASH (:func:`~protocols.ot.gf128.ghash`: rows as associated data,
   carry-less multiplication in hardware, ~1 ns per row). The receiver adds ``x = P(c)`` and
   ``t~ = P(t)`` and the sender checks ``P(q) == t~ + x * Delta'`` (``Delta'`` is ``Delta``
   read as GCM reads a block, :func:`~protocols.ot.gf128.reflect`), else raises
   :class:`~mpc.errors.AbortError`. *Interactive challenge* (active batches of at least
   ``2^20`` padded rows, where hashing ``u`` costs about a round trip,
   :data:`_INTERACTIVE_ROWS`): the receiver sends ``u`` alone (round ``ext``); the sender,
   holding ``u``, draws ``alpha`` (16 bytes from its CSPRNG-seeded PRG) and sends it (round
   ``ext-chal``); the receiver answers with ``x || t~`` (round ``ext-check``), and the sender
   checks as above. KOS's original interactive form: ``u`` is fixed before ``alpha`` exists,
   so there is no grinding term.
3. *derive* per flavour (each OT ``i`` of the pair has a unique index ``idx_i`` from a counter
   both sides keep; ``H`` is the tweakable CCR hash :meth:`~protocols.ot.crhash.CRHash.tccr_wide`):

   - random: sender ``(H(q_i, idx_i), H(q_i ^ Delta, idx_i))``, receiver ``H(t_i, idx_i)``;
   - correlated (Delta-OT): sender ``q_i``, receiver ``t_i`` (no hashing, no extra message);
   - chosen (round ``ext-y``, sender -> receiver): ``y_b = m_b ^ H(q_i ^ b Delta, idx_i)``;
     receiver ``m_c = y_c ^ H(t_i, idx_i)``;
   - ring-correlated (round ``ext-y``): sender ``s = H(q_i)`` read as ring elements, sends
     ``tau = s + x_i - H(q_i ^ Delta)``; receiver ``v = H(t_i) + c_i tau = s + c_i x_i``
     (Gilboa / MASCOT style, Z_2^64 or Z_2^128). Both sides compute exactly these values
     with the hash fused into the ring arithmetic, chunk by chunk in cache-resident scratch
     (:mod:`protocols.ot.ringot`).

Security. Passive mode (``active=False``): IKNP is secure against a semi-honest sender or
receiver assuming the base OTs, AES as a PRG (the streams) and the hash being tweakable
correlation robust (fixed-key AES as an ideal permutation, GKWY S&P 2020). Active mode
(default):

- against a *malicious sender*: IKNP is already secure — in random/correlated OT the sender
  sends nothing; in chosen OT it chooses its messages (its right), in ring OT its ``x_i``.
  Like any OT, this lets it make the receiver's output wrong for one choice value only
  (selective failure): a caller whose later behaviour depends on outputs must check them
  (MASCOT's sacrifice for Gilboa products; a garbled circuit's input consistency).
- against a *malicious receiver*: the KOS check. A receiver that uses different choice vectors
  in different columns passes only by guessing the bits of ``Delta`` in those columns, each
  guess caught with probability 1/2, so it learns ``k`` bits of Delta with probability at most
  ``2^-k`` (plus ``(m+1)/2^128`` for the polynomial hash, plus grinding: ``q`` hash queries
  on ``u`` add ``q (m+1) / 2^128``). We use a polynomial hash (``chi_i = h^(m+1-i)``, with
  ``h = AES_alpha(0)`` uniform as ``alpha`` is a random-oracle output, or the sender's fresh
  random value in the interactive form, and AES a PRF) in place
  of KOS's independent ``chi_i``: the check needs only a GF(2)-linear, ``(m+1)/2^128``-almost
  universal hash family (the generalisation in Roy, SoftSpokenOT, CRYPTO 2022), and GHASH
  evaluates exactly such a polynomial. Privacy of the choices under the check: the >= 192
  random padding rows are the last ones, so their coefficients ``h^2 .. h^(pad+1)`` span the
  field over GF(2) unless ``h`` lies in a proper subfield (probability < 2^-63), which makes
  ``x`` uniform. Random and chosen OT then realize OT (KOS Thm. 1);
  *correlated* OT realizes the KOS "leaky Delta-OT": a malicious receiver may guess a few bits
  of Delta at the price of being caught with probability 1 - 2^-(bits), which protocols built
  on the raw correlation (garbling with this Delta) inherit.
- not provided: the sender's abort is visible only to the sender in one-round calls (the
  receiver learns of it by the sender's silence or its next error; in the interactive form a
  malformed ``u`` is reported in place of the challenge); no fairness; a malicious party can
  always abort.

Cost of a call of ``n`` OTs (``m`` padded rows, ``m <= n + 319`` active, ``n + 127``
passive): 1 round R->S of ``16 m`` bytes (``+ 32`` active) plus, for chosen OT, 1 round S->R
of ``2 n L`` bytes, for ring OT ``n * shape * 8`` (Z_2^64) or ``* 16`` (Z_2^128) bytes; an
interactive challenge (``m >= 2^20``) adds a 16-byte S->R and a 32-byte R->S message (two
flights) in place of the check in the first message. AES:
receiver ``2m`` CTR blocks + ``n (1 + L/16)`` ECB blocks; sender ``m`` CTR + ``2n (1 + L/16)``
ECB; active mode adds one GHASH pass over the ``m`` rows per side (and one over the choice
bits at the receiver) and, below ``2^20`` rows, one SHA-256 pass over ``u`` per side. The
bit-matrix transposes are 64x64 delta swaps on uint64 words
(:func:`~protocols.ot.crhash.transpose_bits`). The local
passes (transposes, the XORs of step 1, the derive step around the AES calls) run as compiled
loops (:mod:`protocols.ot.kernels`, numba) when available, numpy otherwise (the same bytes);
ring calls write their stream bytes and rows into buffers reused from call to call
(:class:`Buffers`), since first-touching fresh memory costs page faults. Preprocessing: the
base OTs of setup (2 rounds, 8 KB R->S + 32 B S->R, about 512 scalar multiplications in all).
Batches above 4096 rows run their numpy work in a worker thread (:func:`asyncio.to_thread`;
numpy, the compiled loops and OpenSSL release the GIL on large buffers) so that the event loop
keeps moving bytes, if the session offloads (:attr:`mpc.session.Session.offload`; a party
without a core to spare computes on the loop); PRG streams, OT indices and rounds are drawn on
the loop, in call order.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Literal

import numpy as np

from mpc.checks import check_int
from mpc.errors import AbortError, ConfigError, ProtocolViolation, error_from_code
from mpc.session import Round, Session
from protocols.ot import gf128
from protocols.ot.base import base_ot_recv, base_ot_send
from protocols.ot.crhash import BLOCK, CRHash, SeedExpander, _kernels, pack_bits, transpose_bits, unpack_bits
from protocols.ot.ringot import check_out, ring_recv, ring_send

__all__ = [
    "KAPPA",
    "Buffers",
    "KOS_PAD",
    "Ring",
    "OTExtSender",
    "OTExtReceiver",
    "ot_pair",
    "padded_rows",
    "fs_challenge",
    "receiver_columns",
    "sender_rows",
    "kos_receiver_check",
    "kos_sender_verify",
    "receiver_batch",
    "sender_batch",
    "hash_rows",
    "hash_pairs",
]

KAPPA = 128
"""Computational security parameter = number of base OTs = bits per extended row."""

KOS_PAD = 192
"""Random rows added in active mode (>= kappa + s with s = 64) so that the check hides choices."""

Ring = Literal["z2_64", "z2_128"]

_FS_DOMAIN = b"mpc/ot/kos-challenge/v1"

_INTERACTIVE_ROWS = 1 << 20
"""Active batches of at least this many padded rows take the KOS challenge from the sender (two
more message flights, one round trip) instead of by Fiat-Shamir. SHA-256 runs at ~1.9 GB/s
here: hashing the 16 MB of ``u`` of 2^20 rows takes ~8 ms per side, about a wide-area round
trip, and in the offline producer (calls of 2^20 OTs) the hash was ~9% of a party's CPU.
Smaller batches (garbled-circuit inputs, most PSI) keep the one-message form, which costs no
extra round trip."""
_DOMAIN_RANDOM, _DOMAIN_CHOSEN, _DOMAIN_RING = 1, 2, 3
_MAX_OTS = 1 << 32


# -- pure functions --------------------------------------------------------------------------


def padded_rows(n: int, active: bool) -> int:
    """Rows actually extended for ``n`` OTs: a multiple of 128, with the KOS padding if active."""
    extra = KOS_PAD if active else 0
    return -(-(n + extra) // KAPPA) * KAPPA


def fs_challenge(context: bytes, u: np.ndarray) -> int:
    """The KOS challenge ``alpha`` (a GF(2^128) element) from the transcript (Fiat-Shamir)."""
    h = hashlib.sha256()
    h.update(_FS_DOMAIN)
    h.update(len(context).to_bytes(4, "little"))
    h.update(context)
    h.update(np.ascontiguousarray(u).data)
    return int.from_bytes(h.digest()[:16], "little")


def _words(a: np.ndarray) -> np.ndarray | None:
    """A (rows, bytes) uint8 matrix as C-contiguous uint64 words, or ``None`` if its rows are not
    whole words."""
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] % 8:
        return None
    return np.ascontiguousarray(a).view(np.uint64)


def receiver_columns(g0: np.ndarray, g1: np.ndarray, packed_choices: np.ndarray, *, reuse_g1: bool = False) -> np.ndarray:
    """IKNP step 1 at the receiver: ``u_j = G(k0_j) ^ G(k1_j) ^ c`` for every column ``j``.

    One compiled pass (:func:`protocols.ot.kernels.xor_rows_with`) when numba is available and
    rows are whole 64-bit words, else numpy (the reference; same bytes). ``reuse_g1``: write
    ``u`` over ``g1`` (a C-contiguous array the caller no longer needs) instead of fresh memory.
    """
    kernels = _kernels()
    w0, w1 = _words(g0), _words(g1)
    wc = _words(packed_choices.reshape(1, -1))
    reuse = reuse_g1 and g1.flags.c_contiguous and g1.flags.writeable
    if kernels is None or w0 is None or w1 is None or wc is None or g0.shape != g1.shape or wc.shape[1] != w0.shape[1]:
        u = np.bitwise_xor(g0, g1, out=g1 if reuse else None)
        u ^= packed_choices[None, :]
        return u
    out = w1 if reuse else np.empty(w0.shape, dtype=np.uint64)
    kernels.xor_rows_with(w0, w1, wc[0], out)  # element by element: writing over w1 is safe
    return out.view(np.uint8)


def sender_rows(
    g: np.ndarray, u: np.ndarray, delta_mask: np.ndarray, *, reuse_g: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """IKNP step 1 at the sender: rows ``q_i`` of ``Q_j = G(k_{Delta_j}) ^ Delta_j u_j``.

    With numba, ``Q`` is formed in one compiled pass (:func:`protocols.ot.kernels.masked_xor`)
    and transposed by :func:`~protocols.ot.crhash.transpose_bits`; else numpy (the reference;
    same bytes).

    Args:
        g: (128, m/8) the sender's stream bytes.
        u: (128, m/8) the receiver's columns.
        delta_mask: (128, 1) uint8, 0xFF where ``Delta_j = 1``.
        reuse_g: form ``Q`` over ``g`` (a C-contiguous array the caller no longer needs).
        out: a buffer for the rows (see :func:`~protocols.ot.crhash.transpose_bits`).
    """
    kernels = _kernels()
    gw, uw = _words(g), _words(u)
    rows = g.shape[0]
    if kernels is None or gw is None or uw is None or g.shape != u.shape:
        q = u & delta_mask
        q ^= g
        return transpose_bits(q)
    # The mask byte of each row repeated into a word: the bytewise AND of the numpy path.
    row_mask = np.ascontiguousarray(np.broadcast_to(np.asarray(delta_mask, dtype=np.uint8).reshape(rows, 1), (rows, 8))).view(np.uint64)
    reuse = reuse_g and g.flags.c_contiguous and g.flags.writeable
    q = gw if reuse else np.empty(gw.shape, dtype=np.uint64)
    kernels.masked_xor(gw, uw, row_mask.reshape(rows), q)  # element by element: over gw is safe
    return transpose_bits(q.view(np.uint8), out=out)


def kos_receiver_check(t: np.ndarray, packed_choices: np.ndarray, m: int, alpha: int) -> np.ndarray:
    """The receiver's KOS check values ``x || t~`` as (32,) uint8.

    ``x = sum_i h^(m+1-i) c_i`` and ``t~ = sum_i h^(m+1-i) t_i`` (:func:`~protocols.ot.gf128.ghash`
    keyed by the challenge ``alpha``), over the ``m`` padded rows.
    """
    key = alpha.to_bytes(16, "little")
    c = unpack_bits(packed_choices, m)
    x = gf128.ghash_bits(c, key)
    tt = gf128.ghash(t[:m], key)
    return np.concatenate([gf128.to_bytes(x), gf128.to_bytes(tt)])


def kos_sender_verify(q: np.ndarray, check: np.ndarray, delta: int, alpha: int) -> None:
    """The sender's KOS check: ``ghash(q) == t~ + x * reflect(Delta)`` (``q_i = t_i ^ c_i Delta``
    and GHASH is linear; :func:`~protocols.ot.gf128.reflect` maps ``Delta`` to GCM's reading).

    Raises:
        AbortError: the check fails (the receiver deviated, or a message was tampered with).
    """
    x = gf128.from_bytes(check[:16])
    tt = gf128.from_bytes(check[16:])
    if gf128.ghash(q, alpha.to_bytes(16, "little")) != tt ^ gf128.mul(x, gf128.reflect(delta)):
        raise AbortError("OT extension: KOS consistency check failed")


def _check_ring(ring: Any) -> Ring:
    if ring not in ("z2_64", "z2_128"):
        raise ConfigError("ring must be 'z2_64' or 'z2_128'")
    return ring  # type: ignore[no-any-return]


def _check_choices(choices: Any) -> np.ndarray:
    c = np.asarray(choices)
    if c.ndim == 1 and c.size == 0:
        return np.zeros(0, dtype=np.uint8)
    if c.ndim != 1 or c.dtype.kind not in "biu":
        raise ConfigError("choices must be a 1-d array of 0/1")
    if c.size > _MAX_OTS:
        raise ConfigError("too many OTs in one call")
    c = c.astype(np.uint8, copy=False)
    if np.any(c > 1):
        raise ConfigError("choices must be 0 or 1")
    return c


def _check_n(n: Any) -> int:
    return check_int(n, "number of OTs", lo=0, hi=_MAX_OTS, numpy=True, message="number of OTs must be an int in [0, 2^32]")


def _check_out(out: Any, size: int) -> None:
    """Check an output buffer before any round is allocated (so a bad one costs no messages)."""
    if out is not None:
        check_out(out, size)


def _check_values(check: Any) -> np.ndarray:
    """The receiver's 32 bytes of KOS check values, or ``ProtocolViolation``."""
    if not isinstance(check, np.ndarray) or check.dtype != np.uint8 or check.shape != (32,):
        raise ProtocolViolation("OT extension: missing or malformed consistency check")
    return check


def _as_delta(delta: Any) -> np.ndarray:
    d = np.frombuffer(bytes(delta), dtype=np.uint8) if isinstance(delta, (bytes, bytearray)) else np.asarray(delta)
    if d.dtype != np.uint8 or d.shape != (BLOCK,):
        raise ConfigError("delta must be 16 bytes or a (16,) uint8 array")
    return d.copy()


def receiver_batch(
    g0: np.ndarray,
    g1: np.ndarray,
    choices: np.ndarray,
    pad_bits: np.ndarray,
    context: bytes,
    active: bool,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The receiver's whole extension step (steps 1 and 2 of the module docstring).

    Args:
        g0, g1: (128, m/8) the next bytes of the streams of ``k0_j`` and ``k1_j`` (``g1`` is
            overwritten: it becomes ``u``).
        choices: (n,) 0/1 uint8.
        pad_bits: (m - n,) random 0/1 uint8.
        context: the Fiat-Shamir context of the call.
        active: compute the KOS check values.
        out: a buffer for the rows ``t`` (see :func:`~protocols.ot.crhash.transpose_bits`).

    Returns:
        ``(u, check, t)``: the (128, m/8) matrix to send, the (32,) check values (``None`` if
        passive) and the receiver's (m, 16) rows.
    """
    m = 8 * g0.shape[1]
    packed = pack_bits(np.concatenate([choices, pad_bits]), m)
    u = receiver_columns(g0, g1, packed, reuse_g1=True)  # g1 is this call's own stream output
    t = transpose_bits(g0, out=out)
    check = kos_receiver_check(t, packed, m, fs_challenge(context, u)) if active else None
    return u, check, t


def sender_batch(
    g: np.ndarray,
    u: np.ndarray,
    delta_mask: np.ndarray,
    delta: int,
    check: np.ndarray | None,
    context: bytes,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The sender's whole extension step: rows ``q_i``, KOS-verified when ``check`` is given.

    ``g`` (the sender's stream bytes) is overwritten with ``Q``; ``out``: a buffer for the rows
    (see :func:`~protocols.ot.crhash.transpose_bits`).

    Raises:
        AbortError: the KOS check fails.
    """
    q = sender_rows(g, u, delta_mask, reuse_g=True, out=out)  # g is this call's own stream output
    if check is not None:
        kos_sender_verify(q, check, delta, fs_challenge(context, u))
    return q


def hash_rows(rows: np.ndarray, first: int, nbytes: int, domain: int) -> np.ndarray:
    """``H(rows_i, first + i)``: (n, nbytes) uint8 (a fresh fixed-key cipher: thread-safe)."""
    return CRHash().tccr_wide(rows, first, nbytes, domain=domain)


def hash_pairs(q: np.ndarray, delta: np.ndarray, first: int, nbytes: int, domain: int) -> tuple[np.ndarray, np.ndarray]:
    """``(H(q_i, first + i), H(q_i ^ Delta, first + i))``, (n, nbytes) uint8 each (both halves in
    one batched hash)."""
    n = q.shape[0]
    both = np.empty((2, n, BLOCK), dtype=np.uint8)
    both[0] = q
    # q ^ Delta one 64-bit column at a time against a scalar (a broadcast over the 16-byte or
    # 2-word axis is numpy's slow path).
    qw, bw, dw = np.ascontiguousarray(q).view(np.uint64), both[1].view(np.uint64), np.asarray(delta, dtype=np.uint8).view(np.uint64)
    np.bitwise_xor(qw[:, 0], dw[0], out=bw[:, 0])
    np.bitwise_xor(qw[:, 1], dw[1], out=bw[:, 1])
    idx = np.empty((2, n), dtype=np.uint64)
    idx[0] = np.arange(n, dtype=np.uint64)
    idx[0] += np.uint64(first)
    idx[1] = idx[0]
    out = CRHash().tccr_indexed(both.reshape(2 * n, BLOCK), idx.reshape(-1), nbytes, domain=domain)
    return out[:n], out[n:]


class Buffers:
    """Reusable flat uint64 buffers for large per-call arrays (OT rows, stream bytes, outputs).

    A fresh array of megabytes is fresh memory: each first write is a page fault and the kernel
    zeroes the page (clear_page was about an eighth of the offline producer's CPU time under
    ``perf``, all processes and threads). Arrays that are dead when a call ends are handed back
    here and the next call writes over them. Taking and giving happen on the event loop (never
    in worker threads), and a buffer is given back only when the call that held it has finished
    (not after an error, when a worker thread may still write into it), so it is never in two
    calls at once. At most ``keep`` free buffers are kept (the largest).
    """

    def __init__(self, keep: int = 8) -> None:
        self._free: list[np.ndarray] = []
        self._keep = keep

    def take(self, words: int) -> np.ndarray:
        """The smallest free buffer of at least ``words`` words, else a fresh one (its first
        ``words`` are the caller's: ``buf[:words]``)."""
        fits = [b for b in self._free if b.size >= words]
        if not fits:
            return np.empty(words, dtype=np.uint64)
        buf = min(fits, key=lambda b: b.size)
        self._free = [b for b in self._free if b is not buf]
        return buf

    def give(self, buf: np.ndarray) -> None:
        """Return a buffer from :meth:`take` (no view of it may be used afterwards)."""
        self._free.append(buf)
        self._free.sort(key=lambda b: b.size, reverse=True)
        del self._free[self._keep :]


_INLINE_ROWS = 1 << 12
"""Batches up to this many rows are always computed on the event loop; larger ones in a worker
thread if the session offloads (:attr:`mpc.session.Session.offload`), so that the loop keeps
moving bytes (and answering pings) while numpy works (numpy, the compiled loops and OpenSSL
release the GIL for the bulk of the work)."""


def _handed_over(a: np.ndarray) -> np.ndarray:
    """``a`` marked read-only, to be sent and never written again: the transport may then send
    it from its memory without copying it (:meth:`mpc.contracts.Channel.send`). For the large
    messages (``u``, the corrections) that a call allocates and sends once."""
    a.flags.writeable = False
    return a


# -- the two roles ---------------------------------------------------------------------------


class _Side:
    """State shared by both roles: the pair's sub-session, peer, mode and OT counter."""

    def __init__(self, session: Session, peer: int, active: bool) -> None:
        self._session = session
        self.peer = peer
        self.active = active
        self._index = 0
        self._buffers = Buffers(keep=4)  # stream bytes and rows of ring calls (two per call)
        self._offload = session.offload

    async def _compute(self, rows: int, fn: Any, *args: Any) -> Any:
        """``fn(*args)``: on the event loop, or in a worker thread for a batch of over
        ``_INLINE_ROWS`` rows when the session offloads."""
        if not self._offload or rows <= _INLINE_ROWS:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    def _scratch(self, m: int, held: list[np.ndarray] | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Reused buffers for a call's stream bytes and rows (``m`` padded rows), recorded in
        ``held`` to be given back when the call is done; ``(None, None)`` if ``held`` is None."""
        if held is None:
            return None, None
        stream = self._buffers.take(-(-(KAPPA * m // 8 + BLOCK) // 8))
        rows = self._buffers.take(2 * m)
        held += [stream, rows]
        return stream.view(np.uint8), rows.view(np.uint8)

    def _release(self, held: list[np.ndarray]) -> None:
        """Give back the buffers of a finished call (its rows are dead)."""
        for buf in held:
            self._buffers.give(buf)

    def _challenge_rounds(self, m: int) -> tuple[Round, Round] | None:
        """The rounds of an interactive KOS challenge (sender's ``alpha``, receiver's check) for
        a batch of ``m`` padded rows, or ``None`` if it takes the challenge by Fiat-Shamir (or
        runs no check). Both sides allocate them right after :meth:`_start`, in call order."""
        if not self.active or m < _INTERACTIVE_ROWS:
            return None
        return self._session.round("ext-chal"), self._session.round("ext-check")

    def _start(self, n: int) -> tuple[Round, int, int]:
        """Allocate this call's round and OT indices (synchronously, in call order)."""
        rnd = self._session.round("ext")
        first = self._index
        self._index += n
        return rnd, first, padded_rows(n, self.active)

    def _context(self, rnd: Round, kind: str, n: int) -> bytes:
        return b"\x00".join([self._session.session_id.encode(), rnd.tag.encode(), kind.encode(), str(n).encode()])


class OTExtSender(_Side):
    """The OT-extension sender bound to one (session, peer). Create with :meth:`setup`.

    Attributes:
        delta: the global correlation, (16,) uint8 (bit ``j`` = base-OT choice ``j``).
        peer: the receiver's party id.
        active: whether the KOS check runs.
    """

    def __init__(self, session: Session, peer: int, active: bool, delta: np.ndarray, seeds: np.ndarray) -> None:
        super().__init__(session, peer, active)
        self.delta = delta
        self._delta_int = gf128.from_bytes(delta)
        self._delta_mask = (unpack_bits(delta, KAPPA) * np.uint8(0xFF)).reshape(KAPPA, 1)
        self._streams = SeedExpander(seeds)

    @classmethod
    async def setup(cls, session: Session, peer: int, *, delta: Any = None, active: bool = True) -> OTExtSender:
        """Run the base OTs (as their receiver) and return a sender bound to ``peer``.

        Args:
            session: this party's session.
            peer: the receiver's party id (it calls :meth:`OTExtReceiver.setup`).
            delta: the global correlation (16 bytes); default random with bit 0 set.
            active: run the KOS check on every batch (the receiver must agree).
        """
        me = session.party_id
        session.party_index(peer)
        if peer == me:
            raise ConfigError("OT needs two distinct parties")
        if delta is None:
            d = np.frombuffer(session.prg.bytes(BLOCK), dtype=np.uint8).copy()
            d[0] |= 1
        else:
            d = _as_delta(delta)
        sub = session.child(f"ot-ext-{me}-{peer}")
        seeds = await base_ot_recv(sub, peer, unpack_bits(d, KAPPA))
        return cls(sub, peer, bool(active), d, seeds)

    async def _extend(self, kind: str, n: int, held: list[np.ndarray] | None = None) -> tuple[np.ndarray, int]:
        rnd, first, m = self._start(n)
        challenge = self._challenge_rounds(m)
        stream, rows = self._scratch(m, held)
        g = self._streams.next(m // 8, out=stream)  # drawn now, in call order
        msg = await rnd.recv(self.peer)
        try:
            u, check = self._batch_message(msg, kind, n, m, fiat_shamir=challenge is None)
        except ProtocolViolation as exc:
            if challenge is not None:  # the receiver waits for the challenge: tell it
                await challenge[0].send(self.peer, {"error": exc.code})
            raise
        context = self._context(rnd, kind, n)
        if challenge is None:
            q = await self._compute(m, sender_batch, g, u, self._delta_mask, self._delta_int, check, context, rows)
            return q[:n], first
        # Interactive KOS: the challenge is drawn after u is in hand, so u cannot depend on it.
        chal_rnd, check_rnd = challenge
        alpha = self._session.prg.bytes(BLOCK)
        await chal_rnd.send(self.peer, {"alpha": alpha})
        q = await self._compute(m, sender_batch, g, u, self._delta_mask, self._delta_int, None, context, rows)
        answer = await check_rnd.recv(self.peer)
        check = _check_values(answer.get("check") if isinstance(answer, dict) and set(answer) == {"check"} else None)
        await self._compute(m, kos_sender_verify, q, check, self._delta_int, int.from_bytes(alpha, "little"))
        return q[:n], first

    def _batch_message(
        self, msg: Any, kind: str, n: int, m: int, *, fiat_shamir: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(u, check)`` of the receiver's batch message; ``check`` is in it only in active
        mode by Fiat-Shamir (``None`` otherwise).

        Raises:
            ProtocolViolation: the message does not match the call or is malformed.
        """
        if not isinstance(msg, dict) or msg.get("kind") != kind or msg.get("n") != n:
            raise ProtocolViolation("OT extension: receiver's batch does not match (kind or size)")
        u = msg.get("u")
        if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.shape != (KAPPA, m // 8):
            raise ProtocolViolation("OT extension: malformed u matrix")
        check = msg.get("check")
        if self.active and fiat_shamir:
            check = _check_values(check)
        elif "check" in msg:
            raise ProtocolViolation("OT extension: unexpected consistency check (mode mismatch)")
        return u, check

    async def _second(self, kind: str, n: int, held: list[np.ndarray] | None = None) -> tuple[np.ndarray, int, Round]:
        """Extend for a two-round flavour; on a failed check or bad message tell the receiver."""
        y_rnd = self._session.round("ext-y")
        try:
            q, first = await self._extend(kind, n, held)
        except (AbortError, ProtocolViolation) as exc:
            await y_rnd.send(self.peer, {"error": exc.code})
            raise
        return q, first, y_rnd

    async def send_correlated(self, n: int) -> np.ndarray:
        """Correlated (Delta-) OT: returns ``q`` (n, 16) uint8; the receiver gets ``q ^ c * delta``."""
        n = _check_n(n)
        if n == 0:
            return np.empty((0, BLOCK), dtype=np.uint8)
        q, _ = await self._extend("correlated", n)
        return q

    async def send_random(self, n: int, nbytes: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
        """Random OT: returns ``(r0, r1)``, (n, nbytes) uint8 each; the receiver gets ``r_c``."""
        n = _check_n(n)
        if nbytes < 1:
            raise ConfigError("nbytes must be positive")
        if n == 0:
            return np.empty((0, nbytes), dtype=np.uint8), np.empty((0, nbytes), dtype=np.uint8)
        q, first = await self._extend("random", n)
        r0, r1 = await self._compute(n, hash_pairs, q, self.delta, first, nbytes, _DOMAIN_RANDOM)
        return r0, r1

    async def send_chosen(self, m0: Any, m1: Any) -> None:
        """Chosen-message OT: the receiver gets ``m0[i]`` or ``m1[i]`` by its choice bit.

        Args:
            m0, m1: (n, L) uint8 arrays of the same shape, any ``L >= 1``.
        """
        a, b = np.asarray(m0), np.asarray(m1)
        if a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim != 2 or a.shape != b.shape or a.shape[1] < 1:
            raise ConfigError("messages must be two (n, L) uint8 arrays of the same shape, L >= 1")
        n, width = _check_n(a.shape[0]), a.shape[1]
        if n == 0:
            return
        q, first, y_rnd = await self._second("chosen", n)
        y0, y1 = await self._compute(n, hash_pairs, q, self.delta, first, width, _DOMAIN_CHOSEN)
        y0 ^= a
        y1 ^= b
        await y_rnd.send(self.peer, {"y0": _handed_over(y0), "y1": _handed_over(y1)})

    async def send_correlated_ring(
        self, x: Any, ring: Ring = "z2_64", *, repeat: int = 1, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Additively correlated OT over Z_2^64 or Z_2^128 (Gilboa / MASCOT).

        Args:
            x: the correlation, (n, *shape) uint64 for ``z2_64``; (n, *shape, 2) uint64
                limbs ``[lo, hi]`` for ``z2_128``.
            ring: ``"z2_64"`` or ``"z2_128"``.
            repeat: send every row of ``x`` in this many consecutive OTs: exactly the OTs of
                ``np.repeat(x, repeat, axis=0)`` (same messages), without materializing it.
            out: a buffer for ``s`` (C-contiguous, writeable, uint64, as many elements as
                ``s``), e.g. one reused across calls; else fresh memory.

        Returns:
            ``s`` of shape ``(n * repeat, *shape)``; the receiver gets ``v = s + c * x``, so
            ``(v, -s)`` is an additive sharing of ``c * x``.
        """
        ring = _check_ring(ring)
        xa = np.asarray(x)
        if xa.dtype != np.uint64 or xa.ndim < 1 or (ring == "z2_128" and (xa.ndim < 2 or xa.shape[-1] != 2)):
            raise ConfigError("x must be (n, ...) uint64 (z2_64) or (n, ..., 2) uint64 limbs (z2_128)")
        repeat = check_int(repeat, "repeat", lo=1, hi=_MAX_OTS, numpy=True)
        n = _check_n(xa.shape[0] * repeat)
        per = int(np.prod(xa.shape[1:], dtype=np.int64)) * 8
        if n == 0 or per == 0:
            return np.zeros((n, *xa.shape[1:]), dtype=np.uint64)
        _check_out(out, n * per // 8)
        held: list[np.ndarray] = []
        q, first, y_rnd = await self._second("ring-" + ring, n, held)
        s: np.ndarray
        s, tau = await self._compute(n, ring_send, q, self.delta, first, xa, ring == "z2_128", _DOMAIN_RING, repeat, out)
        del q
        self._release(held)
        await y_rnd.send(self.peer, {"tau": _handed_over(tau)})
        return s


class OTExtReceiver(_Side):
    """The OT-extension receiver bound to one (session, peer). Create with :meth:`setup`.

    Attributes:
        peer: the sender's party id.
        active: whether the KOS check runs.
    """

    def __init__(self, session: Session, peer: int, active: bool, k0: np.ndarray, k1: np.ndarray) -> None:
        super().__init__(session, peer, active)
        self._streams0 = SeedExpander(k0)
        self._streams1 = SeedExpander(k1)

    @classmethod
    async def setup(cls, session: Session, peer: int, *, active: bool = True) -> OTExtReceiver:
        """Run the base OTs (as their sender) and return a receiver bound to ``peer``.

        Args:
            session: this party's session.
            peer: the sender's party id (it calls :meth:`OTExtSender.setup`).
            active: run the KOS check on every batch (the sender must agree).
        """
        me = session.party_id
        session.party_index(peer)
        if peer == me:
            raise ConfigError("OT needs two distinct parties")
        sub = session.child(f"ot-ext-{peer}-{me}")
        k0, k1 = await base_ot_send(sub, peer, KAPPA)
        return cls(sub, peer, bool(active), k0, k1)

    async def _extend(self, kind: str, c: np.ndarray, held: list[np.ndarray] | None = None) -> tuple[np.ndarray, int]:
        n = c.shape[0]
        rnd, first, m = self._start(n)
        challenge = self._challenge_rounds(m)
        stream, rows = self._scratch(m, held)  # (g1 becomes u, which is sent: never reused)
        # Stream bytes and padding drawn now, in call order; the numpy work may run in a thread.
        g0, g1 = self._streams0.next(m // 8, out=stream), self._streams1.next(m // 8)
        pad = self._session.prg.bits(m - n)
        context = self._context(rnd, kind, n)
        fiat_shamir = self.active and challenge is None
        u, check, t = await self._compute(m, receiver_batch, g0, g1, c, pad, context, fiat_shamir, rows)
        msg: dict[str, Any] = {"kind": kind, "n": n, "u": _handed_over(u)}
        if check is not None:
            msg["check"] = check
        await rnd.send(self.peer, msg)
        if challenge is not None:
            chal_rnd, check_rnd = challenge
            alpha = (await self._answer(chal_rnd, ("alpha",)))["alpha"]
            if not isinstance(alpha, bytes) or len(alpha) != BLOCK:
                raise ProtocolViolation("OT extension: malformed KOS challenge")
            packed = pack_bits(np.concatenate([c, pad]), m)
            check = await self._compute(m, kos_receiver_check, t, packed, m, int.from_bytes(alpha, "little"))
            await check_rnd.send(self.peer, {"check": check})
        return t[:n], first

    async def recv_correlated(self, choices: Any) -> np.ndarray:
        """Correlated (Delta-) OT: returns ``t = q ^ c * delta``, (n, 16) uint8."""
        c = _check_choices(choices)
        if c.size == 0:
            return np.empty((0, BLOCK), dtype=np.uint8)
        t, _ = await self._extend("correlated", c)
        return t

    async def recv_random(self, choices: Any, nbytes: int = BLOCK) -> np.ndarray:
        """Random OT: returns ``r_c``, (n, nbytes) uint8."""
        c = _check_choices(choices)
        if nbytes < 1:
            raise ConfigError("nbytes must be positive")
        if c.size == 0:
            return np.empty((0, nbytes), dtype=np.uint8)
        t, first = await self._extend("random", c)
        out: np.ndarray = await self._compute(c.size, hash_rows, t, first, nbytes, _DOMAIN_RANDOM)
        return out

    async def _answer(self, rnd: Round, keys: tuple[str, ...]) -> dict[str, Any]:
        msg = await rnd.recv(self.peer)
        if isinstance(msg, dict) and set(msg) == {"error"} and isinstance(msg["error"], str):
            raise error_from_code(msg["error"], "OT extension: the sender aborted")
        if not isinstance(msg, dict) or set(msg) != set(keys):
            raise ProtocolViolation("OT extension: malformed sender message")
        return msg

    async def recv_chosen(self, choices: Any, nbytes: int | None = None) -> np.ndarray:
        """Chosen-message OT: returns ``m_c``, (n, L) uint8 (``L`` set by the sender).

        Args:
            choices: (n,) 0/1.
            nbytes: the expected message length ``L``, checked if given.
        """
        c = _check_choices(choices)
        n = c.size
        if n == 0:
            return np.empty((0, nbytes or 0), dtype=np.uint8)
        y_rnd = self._session.round("ext-y")
        t, first = await self._extend("chosen", c)
        msg = await self._answer(y_rnd, ("y0", "y1"))
        y0, y1 = msg["y0"], msg["y1"]
        for y in (y0, y1):
            if not isinstance(y, np.ndarray) or y.dtype != np.uint8 or y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
                raise ProtocolViolation("OT extension: malformed chosen-message ciphertexts")
        if y0.shape != y1.shape or (nbytes is not None and y0.shape[1] != nbytes):
            raise ProtocolViolation("OT extension: chosen messages of unexpected length")
        pad: np.ndarray = await self._compute(n, hash_rows, t, first, y0.shape[1], _DOMAIN_CHOSEN)
        pad ^= np.where(c[:, None].astype(bool), y1, y0)
        return pad

    async def recv_correlated_ring(
        self, choices: Any, shape: tuple[int, ...] = (), ring: Ring = "z2_64", *, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Additively correlated OT: returns ``v = s + c * x`` (see :meth:`OTExtSender.send_correlated_ring`).

        Args:
            choices: (n,) 0/1.
            shape: the per-OT element shape of the sender's ``x`` (without the limb axis).
            ring: ``"z2_64"`` or ``"z2_128"``.
            out: a buffer for ``v`` (as :meth:`OTExtSender.send_correlated_ring`'s ``out``).

        Returns:
            (n, *shape) uint64, or (n, *shape, 2) for ``z2_128``.
        """
        ring = _check_ring(ring)
        c = _check_choices(choices)
        full = (c.size, *tuple(shape)) + ((2,) if ring == "z2_128" else ())
        per = int(np.prod(full[1:], dtype=np.int64)) * 8
        if c.size == 0 or per == 0:
            return np.zeros(full, dtype=np.uint64)
        _check_out(out, c.size * per // 8)
        y_rnd = self._session.round("ext-y")
        held: list[np.ndarray] = []
        t, first = await self._extend("ring-" + ring, c, held)
        tau = (await self._answer(y_rnd, ("tau",)))["tau"]
        if not isinstance(tau, np.ndarray) or tau.dtype != np.uint64 or tau.shape != full:
            raise ProtocolViolation("OT extension: malformed ring correction")
        v: np.ndarray = await self._compute(c.size, ring_recv, t, first, c, tau, ring == "z2_128", _DOMAIN_RING, out)
        del t
        self._release(held)
        return v


_CACHE_PREFIX = "protocols.ot/pair"


async def ot_pair(
    session: Session, sender: int, receiver: int, *, delta: Any = None, active: bool = True
) -> OTExtSender | OTExtReceiver | None:
    """The OT-extension endpoint of this party for the pair ``sender -> receiver``.

    Every party of the session may call it (SPMD): the sender gets an :class:`OTExtSender`, the
    receiver an :class:`OTExtReceiver`, anyone else ``None`` (no rounds). The first call per
    pair runs the base OTs; later calls return the cached object from ``session.resources``.

    Raises:
        ConfigError: bad party ids, or a cached pair with another ``delta`` / ``active``.
    """
    s, r = session.party_index(sender), session.party_index(receiver)
    if s == r:
        raise ConfigError("OT needs two distinct parties")
    me = session.party_id
    if me not in (s, r):
        return None
    key = f"{_CACHE_PREFIX}/{s}->{r}"
    pending = session.resources.get(key)
    if pending is None:
        # Cache the setup task itself, so that concurrent callers share one set of base OTs.
        if me == s:
            pending = asyncio.ensure_future(OTExtSender.setup(session, r, delta=delta, active=active))
        else:
            pending = asyncio.ensure_future(OTExtReceiver.setup(session, s, active=active))
        session.resources[key] = pending
        try:
            return await pending  # type: ignore[no-any-return]
        except BaseException:
            session.resources.pop(key, None)
            raise
    obj = await pending
    if obj.active != bool(active):
        raise ConfigError("OT pair already set up with another active flag")
    if me == s and delta is not None and not np.array_equal(obj.delta, _as_delta(delta)):
        raise ConfigError("OT pair already set up with another delta")
    return obj  # type: ignore[no-any-return]
