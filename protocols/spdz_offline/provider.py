"""``DealerFreePreprocessing``: the SPDZ2k provider filled by the OT-based offline phase.

It implements :class:`protocols.spdz.preprocessing.SpdzPreprocessing` (the synchronous methods
the engine calls) on pools of material that :meth:`DealerFreePreprocessing.produce` fills,
batch by batch, among all the parties of the session. Productions are serialized by tickets
taken synchronously when ``produce`` is called, so parties that call it in the same program
order run the same batches in the same order, even when a production runs as a background task
concurrently with the online phase (:meth:`DealerFreePreprocessing.produce_in_background`,
then :meth:`DealerFreePreprocessing.wait_for` before a phase that needs the material).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable

import numpy as np

from mpc import ring128 as r128
from mpc.checks import check_int
from mpc.errors import AbortError, ConfigError, PreprocessingExhausted
from mpc.session import Session
from protocols.spdz.preprocessing import InputMask, Requirements, TruncationPair, Triple, shape_size
from protocols.spdz.shares import AuthShare

from protocols.spdz_offline.bits import bits_from_triples, truncation_from_bits
from protocols.spdz_offline.coin import Checker, gather_all
from protocols.spdz_offline.pool import Column, Pool
from protocols.spdz_offline.triples import produce_matrix_triples, produce_values
from protocols.spdz_offline.vole import Behaviour, Context, Pairs, setup_pairs, uniform

__all__ = ["DealerFreePreprocessing", "DEFAULT_TAU", "DEFAULT_BATCH", "DEFAULT_LANES"]

DEFAULT_TAU = 256
"""Receiver bits per multiplied entry: ``2^-64`` statistical distance of the extracted value."""

MIN_TAU = 192
DEFAULT_BATCH = 1 << 13
"""Scalar triples per checked batch (the unit of production, abort and accounting)."""

DEFAULT_LANES = 1
"""Batches in flight at once, each lane on its own OT pairs (one lane computes while another
waits for the network). One is best on this 2-core machine, where production is CPU-bound;
more lanes help when parties have spare cores and the network has latency."""

_MATRIX_BATCH_ELEMENTS = 1 << 13
_RAW_BITS = "_bits"  # internal pools (not reported by ``remaining``): bits before truncation
_TRUNC_RANDOM = "_truncation_random"  # ... and the random high halves of truncation pairs


def _frac(frac_bits: Any) -> int:
    return check_int(frac_bits, "frac_bits", lo=1, hi=62, numpy=True)


class DealerFreePreprocessing:
    """This party's dealer-free SPDZ2k material (:meth:`create`, or :func:`protocols.spdz_offline.load`).

    Attributes:
        store_id: 16 bytes the parties agreed on at creation; persisted material is bound to it.
        tau: receiver bits per multiplied entry.
        batch: scalar triples per checked batch.
        lanes: batches produced concurrently (each lane with its own OT pairs).
    """

    def __init__(
        self,
        session: Session,
        key_share: np.ndarray,
        store_id: bytes,
        *,
        tau: int = DEFAULT_TAU,
        batch: int = DEFAULT_BATCH,
        lanes: int = DEFAULT_LANES,
        behaviour: Behaviour | None = None,
    ) -> None:
        check_int(tau, "tau", lo=MIN_TAU)
        check_int(batch, "batch", lo=1)
        check_int(lanes, "lanes", lo=1, hi=8)
        self._session = session
        self._key = np.asarray(key_share, dtype=np.uint64).reshape(())
        self.store_id = bytes(store_id)
        self.tau = tau
        self.batch = batch
        self._behaviour = behaviour or Behaviour()
        self.lanes = lanes
        self._lanes: list[Pairs] = []
        self._pools: dict[str, Pool] = {}
        self._tickets = 0
        self._serving = 0
        self._turn = asyncio.Condition()
        self._changed = asyncio.Event()
        self._failure: BaseException | None = None
        self.saves = 0  # how often this store was persisted (the epoch of the next save - 1)

    # -- creation --------------------------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        session: Session,
        *,
        tau: int = DEFAULT_TAU,
        batch: int = DEFAULT_BATCH,
        lanes: int = DEFAULT_LANES,
        behaviour: Behaviour | None = None,
    ) -> DealerFreePreprocessing:
        """Draw this party's MAC key share, agree on a store id and run the base OTs.

        Every party of ``session`` calls it (SPMD). Rounds: 2 (coin toss for the store id) +
        2 (base OTs of every ordered pair and lane, in parallel).
        """
        from protocols.spdz_offline.coin import coin_toss

        sub = session.child("spdz-offline")
        key_share = sub.prg.uint64(())
        store_id = (await coin_toss(sub, "store-id")).bytes(16)
        provider = cls(sub, key_share, store_id, tau=tau, batch=batch, lanes=lanes, behaviour=behaviour)
        provider._lanes = await _setup_lanes(sub, provider.lanes)
        return provider

    # -- the SpdzPreprocessing interface ---------------------------------------------------------

    @property
    def party_id(self) -> int:
        """The party this material belongs to."""
        return self._session.party_id

    @property
    def n_parties(self) -> int:
        """Number of parties."""
        return self._session.n_parties

    @property
    def parties(self) -> tuple[str, ...]:
        """Names of the parties the material is shared among."""
        return self._session.parties

    def mac_key_share(self) -> np.ndarray:
        """``alpha_i`` (uint64, 0-d)."""
        return self._key.copy()

    def remaining(self) -> dict[str, int]:
        """Elements available per resource key (reserved ones included)."""
        return {k: p.size for k, p in sorted(self._pools.items()) if p.size and not k.startswith("_")}

    def reserve(self, need: Requirements) -> None:
        """Set ``need`` aside for this job.

        Raises:
            PreprocessingExhausted: what is produced and not yet reserved does not cover ``need``
                (nothing is reserved then).
            AbortError: production detected cheating earlier.
        """
        self._live()
        counts = need.counts()
        short = {k: v for k, v in counts.items() if v > self._free(k)}
        if short:
            raise PreprocessingExhausted(f"insufficient preprocessing: {sorted(short)}")
        for key, count in counts.items():
            self._pool(key).reserved += count

    def triples(self, shape: tuple[int, ...]) -> Triple:
        """Elementwise triples of ``shape``."""
        a, b, c = self._take("triples", shape_size(tuple(shape)), 3)
        return Triple(*(_shaped(x, tuple(shape)) for x in (a, b, c)))

    def matrix_triple(self, m: int, k: int, n: int) -> Triple:
        """One ``(m, k) x (k, n)`` matrix triple."""
        if min(m, k, n) < 1:
            raise ConfigError("matrix triple dimensions must be positive")
        a, b, c = self._take(f"matrix_triples/{m}x{k}x{n}", 1, 3)
        return Triple(_shaped(a, (m, k)), _shaped(b, (k, n)), _shaped(c, (m, n)))

    def input_masks(self, owner: int, shape: tuple[int, ...]) -> InputMask:
        """Masks for inputs of ``owner``; the owner also gets ``r mod 2^64``."""
        check_int(owner, "owner", lo=0, hi=self.n_parties - 1, message=f"owner {owner} not in [0, {self.n_parties})")
        shape = tuple(shape)
        if shape_size(shape) == 0:
            empty = np.zeros(shape, dtype=np.uint64) if owner == self.party_id else None
            return InputMask(AuthShare(r128.zeros((2, *shape))), empty)
        mask, value = self._take(f"input_masks/{owner}", shape_size(shape), 2)
        out_value = None if owner != self.party_id else np.asarray(value, dtype=np.uint64).reshape(shape)
        return InputMask(_shaped(mask, shape), out_value)

    def random_values(self, shape: tuple[int, ...]) -> AuthShare:
        """Uniform authenticated values of ``shape``."""
        (r,) = self._take("random_values", shape_size(tuple(shape)), 1)
        return _shaped(r, tuple(shape))

    def bits(self, shape: tuple[int, ...]) -> AuthShare:
        """Uniform authenticated bits of ``shape``."""
        (b,) = self._take("bits", shape_size(tuple(shape)), 1)
        return _shaped(b, tuple(shape))

    def truncation_pairs(self, shape: tuple[int, ...], frac_bits: int) -> TruncationPair:
        """Truncation material of ``shape`` for ``frac_bits`` fractional bits."""
        f = _frac(frac_bits)
        r, high, msb = self._take(f"truncation_pairs/{f}", shape_size(tuple(shape)), 3)
        shape = tuple(shape)
        return TruncationPair(_shaped(r, shape), _shaped(high, shape), _shaped(msb, shape), f)

    # -- production ----------------------------------------------------------------------------

    def produce(self, need: Requirements) -> Awaitable[None]:
        """Produce ``need`` more material among all parties (call it in the same order everywhere).

        The production's turn is taken now (synchronously), so concurrent productions run in
        call order at every party. Returns an awaitable that finishes once the material is in
        the pools, each batch MAC-checked; it must be awaited (or given to
        :meth:`produce_in_background`), since later productions wait for its turn.

        Raises (when awaited):
            MacCheckFailure: a party cheated in the multiplication, authentication or a check.
            AbortError: a coin toss was not opened as committed, or an earlier production failed.
            ProtocolViolation, PeerUnavailable: a malformed message or a silent peer.
        """
        counts = need.counts()  # validates now, before a turn is taken
        for f in need.truncation_pairs:
            _frac(f)
        if any(not 0 <= int(o) < self.n_parties for o in need.input_masks):
            raise ConfigError("input-mask owner not in the session")
        ticket = self._tickets
        self._tickets += 1
        return self._produce(ticket, need, counts)

    def produce_in_background(self, need: Requirements) -> asyncio.Task[None]:
        """:meth:`produce` as a task, to overlap production with the online phase."""
        return asyncio.ensure_future(self.produce(need))

    async def wait_for(self, need: Requirements) -> None:
        """Wait until ``need`` is available (not reserved), e.g. while a background task produces.

        Raises:
            PreprocessingExhausted: no production is pending and ``need`` is not available.
            AbortError: a production failed.
        """
        counts = need.counts()
        while True:
            self._live()
            if all(v <= self._free(k) for k, v in counts.items()):
                return
            if self._serving == self._tickets:
                raise PreprocessingExhausted("preprocessing not available and none is being produced")
            self._changed.clear()
            await self._changed.wait()

    async def _produce(self, ticket: int, need: Requirements, counts: dict[str, int]) -> None:
        async with self._turn:
            await self._turn.wait_for(lambda: self._serving == ticket)
        try:
            self._live()
            if counts:
                await self._run(self._session.child(f"produce-{ticket}"), need)
        except BaseException as exc:
            if self._failure is None:
                self._failure = exc
            raise
        finally:
            async with self._turn:
                self._serving += 1
                self._turn.notify_all()
            self._changed.set()

    async def _run(self, session: Session, need: Requirements) -> None:
        if not self._lanes:
            self._lanes = await _setup_lanes(self._session, self.lanes)
        trunc = {_frac(f): int(c) for f, c in sorted(need.truncation_pairs.items()) if c}
        n_trunc = sum(trunc.values())
        masks = {int(o): int(c) for o, c in sorted(need.input_masks.items()) if c}
        jobs = _plan(need, masks, n_trunc, self.batch)
        # Sessions are made now, in job order, so every party tags the jobs' rounds alike.
        contexts = [
            Context(session.child(f"job-{i}"), self._lanes[i % len(self._lanes)], self._key, self.tau, self._behaviour)
            for i in range(len(jobs))
        ]
        done: dict[int, list[tuple[str, tuple[Column, ...]]]] = {}
        committed = 0

        async def lane(index: int) -> None:
            nonlocal committed
            # Each lane runs its jobs one after the other on its own OT pairs; results are
            # added to the pools in job order (not completion order), the same at every party.
            for i in range(index, len(jobs), len(self._lanes)):
                done[i] = await _run_job(contexts[i], jobs[i])
                while committed in done:
                    for key, columns in done.pop(committed):
                        self._pool(key).add(columns)
                    committed += 1
                    self._changed.set()

        await gather_all(*(lane(i) for i in range(min(len(self._lanes), len(jobs)))))
        # Truncation pairs take 64 of the new bits and one random value each; the rest are bits.
        for f, count in trunc.items():
            (raw_bits,) = self._pool(_RAW_BITS).take(64 * count)
            (t,) = self._pool(_TRUNC_RANDOM).take(count)
            if not isinstance(raw_bits, AuthShare) or not isinstance(t, AuthShare):
                raise ConfigError("internal: truncation material missing")
            self._pool(f"truncation_pairs/{f}").add(truncation_from_bits(raw_bits.reshape(count, 64), t, f))
        raw = self._pool(_RAW_BITS)
        if raw.size:
            self._pool("bits").add(raw.take(raw.size))
        self._changed.set()

    # -- internals -----------------------------------------------------------------------------

    def _live(self) -> None:
        if self._failure is not None:
            raise AbortError("the offline phase aborted earlier; its material is not used") from self._failure

    def _pool(self, key: str) -> Pool:
        if key not in self._pools:
            self._pools[key] = Pool(key)
        return self._pools[key]

    def _free(self, key: str) -> int:
        pool = self._pools.get(key)
        return 0 if pool is None else pool.size - pool.reserved

    def _take(self, key: str, count: int, width: int) -> tuple[Column, ...]:
        self._live()
        if count == 0:
            return tuple(AuthShare(r128.zeros((2, 0))) for _ in range(width))
        pool = self._pools.get(key)
        if pool is None:
            raise PreprocessingExhausted(f"preprocessing exhausted: {key} (none produced)")
        return pool.take(count)

    def deficit(self, need: Requirements) -> Requirements:
        """What is missing (not produced, or reserved) to cover ``need``."""

        def short(key: str, count: int) -> int:
            return max(0, int(count) - self._free(key))

        return Requirements(
            triples=short("triples", need.triples),
            matrix_triples={s: short(f"matrix_triples/{s[0]}x{s[1]}x{s[2]}", c) for s, c in need.matrix_triples.items()},
            input_masks={o: short(f"input_masks/{o}", c) for o, c in need.input_masks.items()},
            random_values=short("random_values", need.random_values),
            bits=short("bits", need.bits),
            truncation_pairs={f: short(f"truncation_pairs/{f}", c) for f, c in need.truncation_pairs.items()},
        )

    def restore(self, key: str, columns: tuple[Column, ...]) -> None:
        """Append a persisted batch to pool ``key`` (hazmat: used by :mod:`.store` only)."""
        self._pool(key).add(columns)

    def pools(self) -> dict[str, Pool]:
        """The pools by resource key (hazmat: for persisting)."""
        return self._pools


@dataclass(frozen=True)
class _Job:
    """One checked batch of a production: values, scalar triples (some turned into bits) or matrices."""

    kind: str
    count: int = 0
    for_triples: int = 0
    shape: tuple[int, int, int] = (1, 1, 1)
    n_random: int = 0
    n_trunc: int = 0
    masks: tuple[tuple[int, int], ...] = ()


def _plan(need: Requirements, masks: dict[int, int], n_trunc: int, batch: int) -> list[_Job]:
    """The jobs of a production, in a deterministic order."""
    jobs: list[_Job] = []
    n_random = int(need.random_values)
    if n_random or masks or n_trunc:
        jobs.append(_Job("values", n_random=n_random, n_trunc=n_trunc, masks=tuple(sorted(masks.items()))))
    n_triples = int(need.triples)
    total = n_triples + int(need.bits) + 64 * n_trunc
    for start in range(0, total, batch):
        count = min(batch, total - start)
        jobs.append(_Job("triples", count=count, for_triples=max(0, min(count, n_triples - start))))
    for (m, k, n), count in sorted(need.matrix_triples.items()):
        per = max(1, _MATRIX_BATCH_ELEMENTS // max(1, int(m) * int(k) * int(n)))
        for start in range(0, int(count), per):
            jobs.append(_Job("matrix", count=min(per, int(count) - start), shape=(int(m), int(k), int(n))))
    return jobs


async def _run_job(ctx: Context, job: _Job) -> list[tuple[str, tuple[Column, ...]]]:
    """Produce and check one job; returns what goes into which pool."""
    out: list[tuple[str, tuple[Column, ...]]] = []
    if job.kind == "values":
        me = ctx.party_id
        masks = dict(job.masks)
        own = uniform(ctx.session, (masks.get(me, 0),))
        checker = Checker(ctx.session, ctx.key_share, ctx.behaviour)
        shared = uniform(ctx.session, (job.n_random + job.n_trunc,))
        values, private = await produce_values(ctx, checker, shared, masks, own, "values")
        await checker.check()
        if job.n_random:
            out.append(("random_values", (AuthShare(values.data[:, : job.n_random]),)))
        if job.n_trunc:
            out.append((_TRUNC_RANDOM, (AuthShare(values.data[:, job.n_random :]),)))
        for owner, mask in private.items():
            value = np.asarray(own.lo).copy() if owner == me else None
            out.append((f"input_masks/{owner}", (mask, value)))
        return out
    if job.kind == "triples":
        count, split = job.count, job.for_triples
        a, b, c = await produce_matrix_triples(ctx, 1, 1, 1, count, "triples")
        a, b, c = (x.reshape(count) for x in (a, b, c))
        if split:
            out.append(("triples", tuple(AuthShare(x.data[:, :split]) for x in (a, b, c))))
        if split < count:
            ra, rb, rc = (AuthShare(x.data[:, split:]) for x in (a, b, c))
            out.append((_RAW_BITS, (await bits_from_triples(ctx, ra, rb, rc, "bits"),)))
        return out
    m, k, n = job.shape
    a, b, c = await produce_matrix_triples(ctx, m, k, n, job.count, "matrix")
    out.append((f"matrix_triples/{m}x{k}x{n}", tuple(AuthShare(x.data.reshape(2, job.count, -1)) for x in (a, b, c))))
    return out


async def _setup_lanes(session: Session, lanes: int) -> list[Pairs]:
    """Base OTs of every lane (each lane has its own OT pairs), all in parallel."""
    subs = [session.child(f"ot-{i}") for i in range(lanes)]
    return list(await gather_all(*(setup_pairs(sub) for sub in subs)))


def _shaped(column: Column, shape: tuple[int, ...]) -> AuthShare:
    if not isinstance(column, AuthShare):
        raise ConfigError("internal: expected shares")
    return column.reshape(shape)
