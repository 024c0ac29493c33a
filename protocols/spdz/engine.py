"""The SPDZ2k engine: one party's state for a job, the batched scheduler, input and reveal.

Security: active (malicious) adversary corrupting up to ``n - 1`` of the ``n`` parties,
security with abort: a cheating party can make the honest parties abort
(:class:`~mpc.errors.MacCheckFailure`, ``ProtocolViolation``, ``PeerUnavailable``) but cannot
make them output a wrong value or learn anything beyond the outputs, except with probability
about 2^-57.9 per MAC check (s = 64). Shapes, the fixed-point flag of each array and the program
itself are public; inputs, intermediate values and outputs not addressed to a party are not.
Assumes the preprocessing is secure (the :class:`~protocols.spdz.dealer.InsecureDealer` is not).

Programming model. Every party runs the same program; secret arrays
(:class:`~protocols.spdz.array.SecretArray`) are *lazy*: a linear operation on available shares
is computed at once, but a multiplication, matrix product or truncation only records a node.
:meth:`Engine.flush` (called by :meth:`Engine.reveal`) runs every recorded node, one
communication round per level: all nodes whose inputs are ready open their masked values in
one message per peer, so a program's rounds follow its multiplicative depth, not its number of
operations. Interactive nodes are generators that yield the shares to open and receive the
opened values, so multi-round protocols batch the same way.

Passive mode (``security="passive"``, an explicit option for users who accept it): secure only
against parties that follow the protocol (semi-honest, up to ``n - 1`` colluding); a single
deviating party can change any output undetected. Openings carry only the low 64 bits of the
value shares (8 bytes per element instead of 16: half the traffic), there is no MAC check (a
reveal is one round) and reveals to everyone need no random values. The shares keep their MACs
locally (the same preprocessing serves both modes), which costs CPU but never leaves the party.

Rounds and bytes (``n`` parties, per party, excluding framing; active mode):

=====================  =======================  ==============================  ===========
operation              rounds                   bytes sent                      consumes
=====================  =======================  ==============================  ===========
input of m elements    1                        owner: 8m (n - 1)               m masks
mul / matmul level     1 (shared per level)     16 (|x| + |y|) (n - 1)          a triple
truncation             1 (shared per level)     16 m (n - 1)                    m pairs
fixed-point mul        2                        the two above                   both
reveal (to all / to    1 + 4 (MAC check)        16 m (n - 1) (per receiver)     m randoms /
receivers)                                      + ~210 (n - 1)                  m masks each
comparison             6 (shared per level)     16 (1 + 2 * 89) m (n - 1)       see compare
=====================  =======================  ==============================  ===========

Large opens with three or more parties (at least ``relay_min`` elements, 2^18 by default) are
*relayed*: each party sums one ``1/n`` slice of every share and sends the sum back, so the open
takes two rounds and ``2 (n - 1) / n`` times the bytes above (``16 * 2 (n - 1) / n`` per
element instead of ``16 (n - 1)``: 21.3 instead of 32 with three parties, 25.6 instead of 64
with five); smaller opens (the latency-bound rounds of comparisons and training) stay one
all-to-all round.

Before a reveal returns, every value opened since the last check (the masked Beaver operands,
truncation values and the output itself) is MAC-checked in one batch and the parties compare
digests of every broadcast input (:mod:`protocols.spdz.maccheck`), then agree on the verdict, so
a tampered check message makes every honest party abort; the check also runs during a long
computation once ``check_every`` opened elements are pending, to bound memory. After any error
the engine refuses further work (:class:`~mpc.errors.AbortError`). Errors outside the MAC check
(a malformed message: ``ProtocolViolation``; bad local input: ``ConfigError``) stop the party
that meets them; the others then time out with ``PeerUnavailable``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Generator, Sequence

import numpy as np

from mpc import fixedpoint
from mpc import ring128 as r128
from mpc.checks import check_int
from mpc.errors import AbortError, ConfigError, ProtocolViolation
from mpc.ring import encode_int
from mpc.ring128 import Z128
from mpc.session import Session
from protocols.spdz import online
from protocols.spdz import shares as sh
from protocols.spdz.maccheck import SeedCommitment, mac_check, new_seed
from protocols.spdz.preprocessing import SpdzPreprocessing
from protocols.spdz.shares import AuthShare

if TYPE_CHECKING:
    from protocols.spdz.array import SecretArray

__all__ = ["Engine", "OpenRequest", "Interactive", "DEFAULT_RELAY_MIN"]

OpenRequest = list[AuthShare]
Interactive = Generator[OpenRequest, list[Z128], AuthShare]
"""An interactive node: yields shares to open, receives the opened values, returns its result."""

_JOINED_MIN = 1 << 16
"""Elements from which a product's masks are computed straight into the open's share rows."""


class _JoinedOpen(list):  # type: ignore[type-arg]
    """An open request whose value shares already lie in one ``(2, N)`` array, ``rows`` (see
    :func:`~protocols.spdz.online.beaver_masks_joined`): opened alone, it is opened in place."""

    def __init__(self, shares: Sequence[AuthShare], rows: np.ndarray) -> None:
        super().__init__(shares)
        self.rows = rows

_DEFAULT_CHECK_EVERY = 1 << 22
DEFAULT_RELAY_MIN = 1 << 18
"""Elements from which an open with three or more parties is relayed (see ``_sum_shares``):
the saved bytes then outweigh the second round's latency."""
_U64 = np.dtype(np.uint64)


class Engine:
    """One party's SPDZ2k state for one job: preprocessing, MAC key share, unchecked opens.

    Args:
        session: this party's session (the engine allocates its rounds under ``spdz``).
        preprocessing: this party's provider of correlated randomness.
        frac_bits: fractional bits of fixed-point arrays (16 by default).
        check_every: run the MAC check once this many opened elements are unchecked.
        security: ``"active"`` (the default: SPDZ2k, MAC-checked) or ``"passive"`` (an explicit
            opt-in, see the module docstring: nothing is checked, openings are modulo 2^64).
        relay_min: open through relays (two rounds, ``2 (n - 1) / n`` of the bytes) when at
            least this many elements are opened at once by three or more parties.

    Raises:
        ConfigError: the provider belongs to another party or party count, or bad parameters.
    """

    def __init__(
        self,
        session: Session,
        preprocessing: SpdzPreprocessing,
        *,
        frac_bits: int = fixedpoint.FRAC_BITS,
        check_every: int = _DEFAULT_CHECK_EVERY,
        security: str = "active",
        relay_min: int = DEFAULT_RELAY_MIN,
    ) -> None:
        if security not in ("active", "passive"):
            raise ConfigError("security must be 'active' (the default) or 'passive'")
        if preprocessing.party_id != session.party_id or preprocessing.n_parties != session.n_parties:
            raise ConfigError("the preprocessing provider belongs to another party or session")
        f = fixedpoint.check_frac_bits(frac_bits)
        if f == 0:
            raise ConfigError("frac_bits must be at least 1")
        check_int(check_every, "check_every", lo=1)
        check_int(relay_min, "relay_min", lo=1)
        self.session = session.child("spdz")
        self.prep = preprocessing
        self.frac_bits = f
        self.check_every = check_every
        self.active = security == "active"
        self.security = security
        self.relay_min = relay_min
        self.party_id = session.party_id
        self.n_parties = session.n_parties
        self._key = np.asarray(preprocessing.mac_key_share(), dtype=_U64).reshape(())
        self._opened: list[Z128] = []
        self._macs: list[Z128] = []
        self._unchecked = 0
        self._transcript = hashlib.sha256(b"spdz2k-broadcast-transcript\x00")
        self._pending: list[SecretArray] = []
        self._aborted: BaseException | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def key_share(self) -> np.ndarray:
        """This party's MAC key share ``alpha_i`` (hazmat: it must never leave the party)."""
        return self._key

    @property
    def unchecked(self) -> int:
        """Opened elements not yet MAC-checked."""
        return self._unchecked

    def _ensure_live(self) -> None:
        if self._aborted is not None:
            raise AbortError("the SPDZ engine aborted earlier; nothing more is computed") from self._aborted

    # -- node creation (used by SecretArray) -----------------------------------------------------

    def concrete(self, value: AuthShare, frac_bits: int) -> SecretArray:
        """A secret array holding ``value`` (hazmat: the caller vouches for the shares)."""
        from protocols.spdz.array import SecretArray

        return SecretArray(self, value.shape, frac_bits, value=value)

    def linear(
        self,
        fn: Callable[..., AuthShare],
        deps: Sequence[SecretArray],
        shape: Callable[[], tuple[int, ...]],
        frac_bits: int,
    ) -> SecretArray:
        """A local function of other arrays: computed now if they are available, else recorded."""
        from protocols.spdz.array import SecretArray

        self._ensure_live()
        values = [d._value for d in deps]
        if None not in values:
            value = fn(*values)
            return SecretArray(self, value.shape, frac_bits, value=value)
        node = SecretArray(self, shape(), frac_bits, deps=tuple(deps), compute=fn, interactive=False)
        self._pending.append(node)
        return node

    def interactive(
        self,
        gen: Callable[..., Interactive],
        deps: Sequence[SecretArray],
        shape: tuple[int, ...],
        frac_bits: int,
    ) -> SecretArray:
        """A node that needs rounds (``gen(*dep_values)`` is its generator); run at flush."""
        from protocols.spdz.array import SecretArray

        self._ensure_live()
        node = SecretArray(self, shape, frac_bits, deps=tuple(deps), compute=gen, interactive=True)
        self._pending.append(node)
        return node

    # -- interactive building blocks ------------------------------------------------------------

    def bilinear_gen(self, op: str, truncate: bool) -> Callable[[AuthShare, AuthShare], Interactive]:
        """The generator of ``x (op) y`` (optionally truncated by ``frac_bits``) by Beaver."""

        def run(x: AuthShare, y: AuthShare) -> Interactive:
            if op == "mul":
                shape = x.shape
                if y.shape != shape:
                    shape = np.broadcast_shapes(x.shape, y.shape)
                    x, y = x.broadcast_to(shape), y.broadcast_to(shape)
                triple = self.prep.triples(shape)
                squeeze: tuple[int, ...] | None = None
            else:
                x, y, squeeze = _promote_matmul(x, y)
                (m, k), n = x.shape, y.shape[1]
                triple = self.prep.matrix_triple(m, k, n)
            if op == "mul" and self.active and x.size >= _JOINED_MIN:
                d_share, e_share, rows = online.beaver_masks_joined(x, y, triple)
                d, e = yield _JoinedOpen([d_share, e_share], rows)
            else:
                d_share, e_share = online.beaver_masks(x, y, triple)
                d, e = yield [d_share, e_share]
            z = online.beaver_product(op, d, e, x, triple)
            if squeeze is not None:
                z = z.reshape(squeeze)
            if truncate:
                z = yield from self.truncate_steps(z)
            return z

        return run

    def truncate_steps(self, z: AuthShare, bits: int | None = None) -> Interactive:
        """Generator steps truncating ``[z]`` by ``bits`` (``frac_bits`` by default; one open)."""
        pair = self.prep.truncation_pairs(z.shape, self.frac_bits if bits is None else bits)
        (c,) = yield [online.truncation_masked(z, pair, self.party_id, self._key)]
        return online.truncation_result(c, pair, self.party_id, self._key)

    def truncate_gen(self, bits: int | None = None) -> Callable[[AuthShare], Interactive]:
        """The generator of a truncation by ``bits`` (``frac_bits`` by default, else in [1, 62])."""
        if bits is None:
            return self.truncate_steps
        b = check_int(bits, "truncation bits", lo=1, hi=62)
        return lambda z: self.truncate_steps(z, b)

    # -- the scheduler ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Run every recorded node, batching the opens of each level into one round.

        Raises:
            AbortError: the engine aborted earlier.
            MacCheckFailure: an automatic MAC check (``check_every``) failed.
        """
        self._ensure_live()
        try:
            await self._flush()
        except BaseException as exc:
            self._aborted = exc
            raise

    async def _flush(self) -> None:
        active: list[tuple[SecretArray, Interactive, OpenRequest]] = []
        while self._pending or active:
            waiting: list[SecretArray] = []
            for node in self._pending:  # creation order: identical at every party
                values = [d._value for d in node._deps]
                if None in values:  # (a list of shares or None: identity comparisons only)
                    waiting.append(node)
                    continue
                if not node._interactive:
                    node._resolve(node._compute(*values))
                    continue
                gen = node._compute(*values)
                try:
                    active.append((node, gen, next(gen)))
                except StopIteration as done:
                    node._resolve(done.value)
            self._pending = waiting
            if not active:
                if self._pending:
                    raise ConfigError("internal: pending nodes with no runnable dependency")
                break
            requests = [req for _, _, reqs in active for req in reqs]
            alone = active[0][2] if len(active) == 1 else None
            opened, _ = await self._open(requests, rows=alone.rows if isinstance(alone, _JoinedOpen) else None)
            still: list[tuple[SecretArray, Interactive, OpenRequest]] = []
            pos = 0
            for node, gen, reqs in active:
                mine, pos = opened[pos : pos + len(reqs)], pos + len(reqs)
                try:
                    still.append((node, gen, gen.send(mine)))
                except StopIteration as done:
                    node._resolve(done.value)
            active = still
            if self._unchecked >= self.check_every:
                await self._check(None, None)

    # -- opening and checking ---------------------------------------------------------------------

    async def _open(
        self, requests: Sequence[AuthShare], commitment: bytes | None = None, *, rows: np.ndarray | None = None
    ) -> tuple[list[Z128], dict[int, bytes]]:
        """Open shared arrays to every party (unchecked until the next MAC check; hazmat).

        This party's value shares of all ``requests`` are summed with every peer's by
        :meth:`_sum_shares` (all to all, or relayed for large opens), optionally with a seed
        commitment sent to every peer in the first message. The MAC shares are kept by
        reference until the check (MAC shares are never modified in place). ``rows``, if
        given, is this party's value shares of the requests already laid out as the open sends
        them (a :class:`_JoinedOpen`): they are summed in place, not copied.
        """
        if not self.active:
            return await self._open_passive(requests), {}
        sizes = [r.size for r in requests]
        total_size = sum(sizes)
        if rows is not None:
            if rows.shape != (2, total_size) or rows.dtype != _U64:
                raise ConfigError("internal: joined open rows do not match the requests")
        else:
            # this party's value shares: row 0 the low limbs, row 1 the high limbs
            rows = np.empty((2, total_size), dtype=_U64)
            pos = 0
            for r, size in zip(requests, sizes):
                rows[0, pos : pos + size] = r.data.lo[0].reshape(-1)
                rows[1, pos : pos + size] = r.data.hi[0].reshape(-1)
                pos += size
        summed, commitments = await self._sum_shares(rows, _add_limbs128, commitment)
        total = Z128(summed[0], summed[1])
        opened = sh.split_flat(total, [r.shape for r in requests])
        if total_size:
            # the MAC check walks the opened values and MAC shares in the same order
            self._opened.append(total)
            self._macs.extend(r.mac.reshape(-1) for r in requests if r.size)
        self._unchecked += total_size
        return opened, commitments

    async def _open_passive(self, requests: Sequence[AuthShare]) -> list[Z128]:
        """Passive mode: open the values modulo 2^64 only (the low limbs of the value shares).

        Every consumer of an opened value reads its low 64 bits (Beaver's ``d, e`` are only
        needed modulo 2^64 for a product modulo 2^64); the high limbs never leave the party.
        """
        total_size = sum(r.size for r in requests)
        low = np.empty((1, total_size), dtype=_U64)
        pos = 0
        for r in requests:
            low[0, pos : pos + r.size] = r.data.lo[0].reshape(-1)
            pos += r.size
        summed, _ = await self._sum_shares(low, _add_limbs64, None)
        return sh.split_flat(Z128(summed[0], np.zeros(total_size, dtype=_U64)), [r.shape for r in requests])

    async def _sum_shares(
        self, mine: np.ndarray, add: Callable[[np.ndarray, Any], None], commitment: bytes | None
    ) -> tuple[np.ndarray, dict[int, bytes]]:
        """Every party's ``(limbs, N)`` share rows summed (``add``, into ``mine``), and the peers'
        commitments.

        Below :attr:`relay_min` elements, or with two parties: one round, every party sends its
        rows to every peer (``limbs * 8 * N (n - 1)`` bytes). From ``relay_min`` elements with
        three or more parties the open is *relayed*: the ``N`` positions are cut into ``n``
        slices, party ``p`` receives every share of slice ``p``, sums it and sends the sum to
        every peer: two rounds, ``2 (n - 1) / n`` of the bytes of the all-to-all open per
        element (2/3 with three parties, 2/5 with five). A relay that sends different sums to
        different parties is caught like a party that sends different shares: every party
        MAC-checks the values it opened with its own coefficients' combination, and any
        inconsistency makes the sum of the check values non-zero except with the MAC check's
        probability. Nobody learns more than in the all-to-all open (there, every party gets
        every share).
        """
        limbs, total = mine.shape
        n, me, others = self.n_parties, self.party_id, self.session.others
        extra = {} if commitment is None else {"c": commitment}
        # Sent payloads are copied when sent, so the sums accumulate in ``mine`` itself.
        if n < 3 or total < self.relay_min:
            got = await self.session.exchange("open", {"v": mine, **extra})
            for peer, msg in sorted(got.items()):
                add(mine, _share_rows(msg, peer, limbs, total))
            return mine, _commitments(got, commitment)
        bounds = [total * i // n for i in range(n + 1)]
        # one slice's limb rows are contiguous 1-d views: sent as they are
        sends = {p: {**_slice_rows(mine, bounds[p], bounds[p + 1]), **extra} for p in others}
        got = await self.session.exchange("open-relay", sends, per_peer=True)
        width = bounds[me + 1] - bounds[me]
        own = mine[:, bounds[me] : bounds[me + 1]]
        for peer, msg in sorted(got.items()):
            add(own, _share_slices(msg, peer, limbs, width))
        back = await self.session.exchange("open-relayed", _slice_rows(mine, bounds[me], bounds[me + 1]))
        for peer, msg in back.items():
            mine[:, bounds[peer] : bounds[peer + 1]] = _share_slices(msg, peer, limbs, bounds[peer + 1] - bounds[peer])
        return mine, _commitments(got, commitment)

    async def _check(self, seed: SeedCommitment | None, commitments: dict[int, bytes] | None) -> None:
        if not self.active:
            return  # passive mode: nothing is checked
        await mac_check(
            self.session,
            self._opened,
            self._macs,
            self._key,
            self._transcript.digest(),
            seed=seed,
            peer_commitments=commitments,
        )
        self._opened, self._macs, self._unchecked = [], [], 0

    async def check(self) -> None:
        """MAC-check every value opened so far (runs :meth:`flush` first).

        Raises:
            MacCheckFailure: some opened value or MAC was tampered with.
        """
        await self.flush()
        try:
            await self._check(None, None)
        except BaseException as exc:
            self._aborted = exc
            raise

    # -- input ----------------------------------------------------------------------------------

    def _encode_input(self, value: Any, frac_bits: int | None) -> tuple[np.ndarray, int]:
        if value is None:
            raise ConfigError("the input owner must pass its value")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise ConfigError(f"cannot input dtype {arr.dtype}")
        f = (self.frac_bits if arr.dtype.kind == "f" else 0) if frac_bits is None else frac_bits
        if f not in (0, self.frac_bits):
            raise ConfigError(f"frac_bits must be 0 or {self.frac_bits}")
        if f:
            return fixedpoint.encode(arr, f), f
        if arr.dtype.kind == "f":
            raise ConfigError("float input needs fixed point (frac_bits > 0)")
        return encode_int(arr.astype(np.int64) if arr.dtype.kind == "b" else arr), 0

    def _accept_input(self, owner: int, msg: Any, shape: tuple[int, ...] | None) -> tuple[np.ndarray, int]:
        if not isinstance(msg, dict):
            raise ProtocolViolation(f"party {owner} sent a malformed input")
        d, f = msg.get("d"), msg.get("f")
        if not isinstance(d, np.ndarray) or d.dtype != _U64:
            raise ProtocolViolation(f"party {owner} sent an input that is not a uint64 array")
        if isinstance(f, bool) or f not in (0, self.frac_bits):
            raise ProtocolViolation(f"party {owner} sent an input with invalid frac_bits")
        if shape is not None and d.shape != tuple(shape):
            raise ProtocolViolation(f"party {owner} sent shape {d.shape}, expected {tuple(shape)}")
        return d, int(f)

    def _record_broadcast(self, owner: int, d: np.ndarray, f: int) -> None:
        header = f"input|{owner}|{f}|{d.shape}|".encode()
        self._transcript.update(len(header).to_bytes(4, "little") + header)
        self._transcript.update(np.ascontiguousarray(d).tobytes())

    async def input(
        self, value: Any, owner: int | str, *, shape: tuple[int, ...] | None = None, frac_bits: int | None = None
    ) -> SecretArray:
        """Secret-share ``owner``'s array (one round); every party calls it, only the owner's value counts.

        Args:
            value: at the owner, its array (float: fixed point; int or bool: integers); ignored
                elsewhere.
            owner: the owner's party name or id.
            shape: the expected shape, if the program knows it (checked at every party).
            frac_bits: ``0`` (integers) or the engine's ``frac_bits``; by default from the dtype.

        Raises:
            ConfigError: invalid value (non-finite, out of fixed-point range) at the owner.
            ProtocolViolation: the owner sent a malformed array or one of the wrong shape.
        """
        self._ensure_live()
        own = self.session.party_index(owner)
        try:
            return await self._input(value, own, shape, frac_bits)
        except BaseException as exc:
            self._aborted = exc
            raise

    async def _input(self, value: Any, owner: int, shape: tuple[int, ...] | None, frac_bits: int | None) -> SecretArray:
        payload = None
        if self.party_id == owner:
            x, f = self._encode_input(value, frac_bits)
            if shape is not None and x.shape != tuple(shape):
                raise ConfigError(f"input shape {x.shape} differs from the declared {tuple(shape)}")
            mask = self.prep.input_masks(owner, x.shape)
            _check_mask_value(mask.value, x.shape)
            payload = {"d": online.input_masked(x, mask.value), "f": f}
            got = await self.session.broadcast("input", payload, sender=owner)
            d = payload["d"]
        else:
            got = await self.session.broadcast("input", None, sender=owner)
            d, f = self._accept_input(owner, got, shape)
            mask = self.prep.input_masks(owner, d.shape)
        self._record_broadcast(owner, d, f)
        return self.concrete(online.input_share(mask.mask, d, self.party_id, self._key), f)

    async def input_all(self, value: Any, *, frac_bits: int | None = None) -> list[SecretArray]:
        """Every party shares one array, in one round; returns them in party order.

        Input masks are consumed per owner (each owner's masks are its own resource).
        """
        self._ensure_live()
        try:
            x, f = self._encode_input(value, frac_bits)
            mask = self.prep.input_masks(self.party_id, x.shape)
            _check_mask_value(mask.value, x.shape)
            d_own = online.input_masked(x, mask.value)
            got = await self.session.exchange("input-all", {"d": d_own, "f": f})
            out: list[SecretArray] = []
            for p in range(self.n_parties):
                if p == self.party_id:
                    d, fp, m = d_own, f, mask
                else:
                    d, fp = self._accept_input(p, got[p], None)
                    m = self.prep.input_masks(p, d.shape)
                self._record_broadcast(p, d, fp)
                out.append(self.concrete(online.input_share(m.mask, d, self.party_id, self._key), fp))
            return out
        except BaseException as exc:
            self._aborted = exc
            raise

    def constant(self, value: Any, frac_bits: int | None = None) -> SecretArray:
        """A public array as a (trivially) shared one: party 0 holds it, MACs are ``alpha_i * c``."""
        self._ensure_live()
        c, f = self._encode_input(value, frac_bits)
        zero = AuthShare(r128.zeros((2, *c.shape)))
        return self.concrete(sh.add_public(zero, c, self.party_id, self._key), f)

    # -- output ---------------------------------------------------------------------------------

    def _receivers(self, to: Any) -> tuple[int, ...] | None:
        if to is None:
            return None
        names = [to] if isinstance(to, (str, int)) else list(to)
        if not names:
            raise ConfigError("reveal needs at least one receiver")
        ids = sorted({self.session.party_index(t) for t in names})
        return None if len(ids) == self.n_parties else tuple(ids)

    async def reveal(self, x: SecretArray | Sequence[SecretArray], to: Any = None) -> Any:
        """Open secret arrays to every party or to the named ones, after a MAC check.

        Args:
            x: a secret array or a sequence of them (revealed together, one round).
            to: ``None`` (everyone), a party name or id, or a list of them.

        Returns:
            At a receiver, the plaintext (int64 for integer arrays, float64 for fixed point),
            or a list of them for a sequence; ``None`` at any other party.

        Raises:
            MacCheckFailure: an opened value or MAC was tampered with, or a broadcast was
                inconsistent (nothing is returned).
        """
        from protocols.spdz.array import SecretArray

        single = isinstance(x, SecretArray)
        items: list[SecretArray] = [x] if single else list(x)  # type: ignore[list-item]
        if any(not isinstance(i, SecretArray) or i._engine is not self for i in items):
            raise ConfigError("reveal takes secret arrays of this engine")
        receivers = self._receivers(to)
        await self.flush()
        try:
            low = await self._reveal(items, receivers)
        except BaseException as exc:
            self._aborted = exc
            raise
        if low is None:
            return None
        outputs = [self._decode(v, i.frac_bits) for v, i in zip(low, items)]
        return outputs[0] if single else outputs

    async def _reveal(self, items: list[SecretArray], receivers: tuple[int, ...] | None) -> list[np.ndarray] | None:
        requests: list[AuthShare] = []
        mine: list[np.ndarray] = []
        for item in items:
            value = item._value
            if value is None:
                raise ConfigError("internal: reveal of an unevaluated array")
            if receivers is None:
                # passive: only the low 64 bits are opened, so nothing needs masking
                requests.append(online.output_masked(value, self.prep.random_values(item.shape)) if self.active else value)
                continue
            for j in receivers:
                mask = self.prep.input_masks(j, item.shape)
                requests.append(sh.sub(value, mask.mask))
                if j == self.party_id:
                    mine.append(_check_mask_value(mask.value, item.shape))
        if self.active:
            seed = new_seed(self.session.prg, self.session.path, self.party_id)
            opened, commitments = await self._open(requests, seed.commitment)
            await self._check(seed, commitments)
        else:
            opened, _ = await self._open(requests)
        if receivers is None:
            return [o.lo for o in opened]
        if self.party_id not in receivers:
            return None
        slot = receivers.index(self.party_id)
        k = len(receivers)
        # x = (x - r) + r mod 2^64, on 1-d views (numpy scalars warn on wrap-around)
        return [(opened[i * k + slot].lo.reshape(-1) + r.reshape(-1)).reshape(r.shape) for i, r in enumerate(mine)]

    @staticmethod
    def _decode(low: np.ndarray, frac_bits: int) -> np.ndarray:
        arr = np.asarray(low, dtype=_U64)
        return fixedpoint.decode(arr, frac_bits) if frac_bits else arr.view(np.int64)


def _check_mask_value(value: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The owner's mask values, as the provider must give them."""
    if not isinstance(value, np.ndarray) or value.dtype != _U64 or value.shape != tuple(shape):
        raise ConfigError("the preprocessing provider gave the owner no valid mask values")
    return value


def _promote_matmul(x: AuthShare, y: AuthShare) -> tuple[AuthShare, AuthShare, tuple[int, ...] | None]:
    """2-d operands for a secret matrix product, and the result shape to restore for 1-d ones."""
    if x.ndim not in (1, 2) or y.ndim not in (1, 2):
        raise ConfigError("secret @ secret supports 1-d and 2-d operands")
    xs, ys = x.shape, y.shape
    x2 = x.reshape(1, xs[0]) if x.ndim == 1 else x
    y2 = y.reshape(ys[0], 1) if y.ndim == 1 else y
    if x2.shape[1] != y2.shape[0]:
        raise ConfigError(f"matmul shapes {xs} and {ys} do not match")
    if x.ndim == 2 and y.ndim == 2:
        return x2, y2, None
    out = (x2.shape[0], y2.shape[1])
    squeezed = tuple(d for d, keep in zip(out, (x.ndim == 2, y.ndim == 2)) if keep)
    return x2, y2, squeezed


def _share_rows(msg: Any, peer: int, limbs: int, size: int) -> np.ndarray:
    """The ``(limbs, size)`` uint64 array of an open message, or ``ProtocolViolation``."""
    arr = msg.get("v") if isinstance(msg, dict) else None
    if not isinstance(arr, np.ndarray) or arr.dtype != _U64 or arr.shape != (limbs, size):
        raise ProtocolViolation(f"party {peer} sent a malformed open (expected {size} elements)")
    return arr


def _slice_rows(rows: np.ndarray, start: int, stop: int) -> dict[str, np.ndarray]:
    """The limb rows of positions ``start:stop`` as contiguous 1-d views ``v0, v1, ...``."""
    return {f"v{i}": rows[i, start:stop] for i in range(rows.shape[0])}


def _share_slices(msg: Any, peer: int, limbs: int, size: int) -> list[np.ndarray]:
    """The limb rows ``v0, v1, ...`` of a relayed open message, or ``ProtocolViolation``."""
    rows = [msg.get(f"v{i}") if isinstance(msg, dict) else None for i in range(limbs)]
    for arr in rows:
        if not isinstance(arr, np.ndarray) or arr.dtype != _U64 or arr.shape != (size,):
            raise ProtocolViolation(f"party {peer} sent a malformed relayed open (expected {size} elements)")
    return rows  # type: ignore[return-value]


def _commitments(got: dict[int, Any], commitment: bytes | None) -> dict[int, bytes]:
    """The peers' seed commitments carried by an open (none unless this party sent one)."""
    if commitment is None:
        return {}
    out: dict[int, bytes] = {}
    for peer, msg in sorted(got.items()):
        c = msg.get("c") if isinstance(msg, dict) else None
        if not isinstance(c, bytes) or len(c) != 32:
            raise ProtocolViolation(f"party {peer} sent no seed commitment")
        out[peer] = c
    return out


def _add_limbs128(acc: np.ndarray, other: np.ndarray | Sequence[np.ndarray]) -> None:
    """``acc += other`` modulo 2^128 in place: ``(low, high)`` limb rows of ``N`` elements."""
    acc[0] += other[0]
    carry = acc[0] < other[0]  # the low limb wrapped
    acc[1] += other[1]
    acc[1] += carry


def _add_limbs64(acc: np.ndarray, other: np.ndarray | Sequence[np.ndarray]) -> None:
    """``acc += other`` modulo 2^64 in place (one limb row)."""
    acc[0] += other[0]
