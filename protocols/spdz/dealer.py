"""``InsecureDealer``: SPDZ2k preprocessing from a dealer seed that every party knows.

INSECURE, for tests and online-phase benchmarks only. Each party's dealer instance derives
*all* parties' correlated randomness (MAC key, triples, masks, bits) from one shared 16-byte
dealer seed and keeps its own shares. So every party can compute every other party's shares
and the MAC key: the shares hide nothing and the MACs authenticate nothing against a party
that knows the seed. It exists so the online protocols can be tested and measured alone; a
real job uses the dealer-free provider. Constructing it without ``allow_insecure=True``
raises :class:`~mpc.errors.InsecureConfiguration`.

Generation. Each resource kind draws from its own AES-CTR streams, derived from the seed and a
label (:meth:`mpc.prg.PRG.derive`): the values (e.g. ``triples/a``), and for party
``i < n - 1`` its value and MAC shares (``triples/a/share/i``, ``triples/a/mac/i``); party
``n - 1`` draws every other party's streams and takes the remainders ``v - sum`` and
``alpha * v - sum``. Streams are read element by element, so the material is a function of
the element's position only: parties that request the same resources in the same order hold
consistent shares however they batch (or :meth:`InsecureDealer.reserve` ahead) their requests.
Parties other than the last only expand their own streams (no multiplications).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mpc import ring128 as r128
from mpc.checks import check_int
from mpc.errors import ConfigError, InsecureConfiguration, PreprocessingExhausted
from mpc.prg import PRG, SEED_BYTES
from mpc.ring128 import Z128
from mpc.session import Session
from protocols.spdz.preprocessing import ComparisonMask, InputMask, Requirements, TruncationPair, Triple, shape_size
from protocols.spdz.shares import AuthShare

__all__ = ["InsecureDealer", "insecure_dealer"]

_Columns = tuple[AuthShare | np.ndarray | None, ...]


class _Buffer:
    """Material of one kind generated ahead of need: columns, a read position and the count
    left from it (taking is slicing views; nothing is copied until more is generated).

    A column's elements lie along axis 1 of its shares (``(2, count, ...)``), or along its last
    axis for the columns listed in ``last_axis`` (bit-major ``(2, width, count)`` material).
    """

    __slots__ = ("columns", "start", "size", "axes")

    def __init__(self, last_axis: tuple[int, ...] = ()) -> None:
        self.columns: _Columns = ()
        self.start = 0
        self.size = 0
        self.axes = last_axis

    def _part(self, i: int, c: AuthShare | np.ndarray | None, start: int, stop: int) -> AuthShare | np.ndarray | None:
        if i in self.axes and isinstance(c, AuthShare):
            return AuthShare._of(c.data[..., start:stop])
        return _part(c, start, stop)

    def take(self, n: int, generate: Callable[[int], _Columns]) -> _Columns:
        if n > self.size:
            self.fill(n - self.size, generate)
        start = self.start
        self.start, self.size = start + n, self.size - n
        return tuple(self._part(i, c, start, start + n) for i, c in enumerate(self.columns))

    def fill(self, n: int, generate: Callable[[int], _Columns]) -> None:
        if n > 0:
            fresh = generate(n)
            if self.size == 0:
                self.columns = fresh
            else:
                end = self.start + self.size
                self.columns = tuple(
                    _join(self._part(i, a, self.start, end), b, -1 if i in self.axes else 1)
                    for i, (a, b) in enumerate(zip(self.columns, fresh))
                )
            self.start = 0
            self.size += n


def _join(a: AuthShare | np.ndarray | None, b: AuthShare | np.ndarray | None, axis: int = 1) -> AuthShare | np.ndarray | None:
    if a is None or b is None:
        return None
    if isinstance(a, AuthShare) and isinstance(b, AuthShare):
        return AuthShare._of(r128.concatenate([a.data, b.data], axis=axis))
    return np.concatenate([a, b])  # type: ignore[list-item]


def _part(c: AuthShare | np.ndarray | None, start: int, stop: int) -> AuthShare | np.ndarray | None:
    if c is None:
        return None
    return AuthShare._of(c.data[:, start:stop]) if isinstance(c, AuthShare) else c[start:stop]


class InsecureDealer:
    """Correlated randomness for party ``party_id`` from a dealer seed all parties share.

    INSECURE (see the module docstring): for tests and online benchmarks only.

    Args:
        party_id: this party's id.
        n_parties: number of parties.
        seed: the shared 16-byte dealer seed (the same at every party).
        allow_insecure: must be ``True``; otherwise :class:`InsecureConfiguration` is raised.
        capacity: the most this dealer will hand out (``None``: unlimited). Going beyond it
            raises :class:`PreprocessingExhausted`, as a real provider does when it runs out.

    Raises:
        InsecureConfiguration: ``allow_insecure`` is not ``True``.
        ConfigError: invalid ids or seed.
    """

    def __init__(
        self,
        party_id: int,
        n_parties: int,
        seed: bytes,
        *,
        allow_insecure: bool = False,
        capacity: Requirements | None = None,
    ) -> None:
        if allow_insecure is not True:
            raise InsecureConfiguration(
                "InsecureDealer gives every party all shares and the MAC key; "
                "construct it with allow_insecure=True (tests and benchmarks only)"
            )
        check_int(n_parties, "n_parties", lo=1, message="invalid party count")
        check_int(party_id, "party_id", message="invalid party count")
        if not 0 <= party_id < n_parties:
            raise ConfigError(f"party id {party_id} not in [0, {n_parties})")
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
            raise ConfigError(f"dealer seed must be {SEED_BYTES} bytes")
        self._party_id = party_id
        self._n = n_parties
        self._seed = bytes(seed)
        self._streams: dict[str, PRG] = {}
        self._buffers: dict[str, _Buffer] = {}
        self._left: dict[str, int] | None = None if capacity is None else capacity.counts()
        # a dealer limited to a capacity without comparison masks serves comparisons from bits
        self._offers_masks = capacity is None or capacity.comparison_masks > 0
        self._reserved: dict[str, int] = {}
        keys = [PRG.derive(self._seed, f"mac-key/{i}").uint64(()) for i in range(n_parties)]
        self._key_share = np.asarray(keys[party_id], dtype=np.uint64)
        self._alpha = r128.sum(r128.from_u64(np.array(keys, dtype=np.uint64)))

    # -- the SpdzPreprocessing interface -------------------------------------------------------

    @property
    def party_id(self) -> int:
        """The party this material belongs to."""
        return self._party_id

    @property
    def n_parties(self) -> int:
        """Number of parties."""
        return self._n

    @property
    def offers_comparison_masks(self) -> bool:
        """Whether comparisons should use :meth:`comparison_masks`: unless the dealer is limited
        to a capacity that has none (then they use bits, random values and triples)."""
        return self._offers_masks

    def mac_key_share(self) -> np.ndarray:
        """``alpha_i`` (uint64, 0-d)."""
        return self._key_share.copy()

    def remaining(self) -> dict[str, int]:
        """Elements available per resource key (reserved and not yet consumed included).

        Empty when the dealer is unlimited.
        """
        if self._left is None:
            return {}
        out = dict(self._left)
        for key, count in self._reserved.items():
            out[key] = out.get(key, 0) + count
        return out

    def reserve(self, need: Requirements) -> None:
        """Check ``need`` against the capacity and generate it ahead of the online phase.

        Raises:
            PreprocessingExhausted: the capacity cannot cover ``need`` (nothing is consumed).
        """
        counts = need.counts()
        if self._left is not None:
            short = {k: v for k, v in counts.items() if v > self._left.get(k, 0)}
            if short:
                raise PreprocessingExhausted(f"insufficient preprocessing: {sorted(short)}")
            for key, count in counts.items():
                self._left[key] -= count
        for key, count in counts.items():
            self._reserved[key] = self._reserved.get(key, 0) + count
            kind, _, arg = key.partition("/")
            if kind == "matrix_triples":
                m, k, n = (int(v) for v in arg.split("x"))
                self._buffer(key).fill(count, lambda c, m=m, k=k, n=n: self._gen_matrix(c, m, k, n))
            else:
                self._buffer(key).fill(count, self._generator(kind, arg))

    def triples(self, shape: tuple[int, ...]) -> Triple:
        """Elementwise triples of ``shape``."""
        a, b, c = self._take("triples", shape, self._gen_triples)
        return Triple(_shaped(a, shape), _shaped(b, shape), _shaped(c, shape))

    def matrix_triple(self, m: int, k: int, n: int) -> Triple:
        """One ``(m, k) x (k, n)`` matrix triple."""
        if min(m, k, n) < 1:
            raise ConfigError("matrix triple dimensions must be positive")
        key = f"matrix_triples/{m}x{k}x{n}"
        self._consume(key, 1)
        a, b, c = self._buffer(key).take(1, lambda cnt: self._gen_matrix(cnt, m, k, n))
        return Triple(_shaped(a, (m, k)), _shaped(b, (k, n)), _shaped(c, (m, n)))

    def input_masks(self, owner: int, shape: tuple[int, ...]) -> InputMask:
        """Masks for inputs of party ``owner``; the owner also gets ``r mod 2^64``."""
        check_int(owner, "owner", lo=0, hi=self._n - 1, message=f"owner {owner} not in [0, {self._n})")
        mask, value = self._take(f"input_masks/{owner}", shape, lambda c: self._gen_masks(c, owner))
        return InputMask(_shaped(mask, shape), None if value is None else np.asarray(value).reshape(shape))

    def random_values(self, shape: tuple[int, ...]) -> AuthShare:
        """Uniform authenticated values of ``shape``."""
        (r,) = self._take("random_values", shape, self._gen_random)
        return _shaped(r, shape)

    def bits(self, shape: tuple[int, ...]) -> AuthShare:
        """Uniform authenticated bits of ``shape``."""
        (b,) = self._take("bits", shape, self._gen_bits)
        return _shaped(b, shape)

    def truncation_pairs(self, shape: tuple[int, ...], frac_bits: int) -> TruncationPair:
        """Truncation material of ``shape`` for ``frac_bits`` fractional bits."""
        f = _frac(frac_bits)
        r, hi, msb = self._take(f"truncation_pairs/{f}", shape, lambda c: self._gen_trunc(c, f))
        return TruncationPair(_shaped(r, shape), _shaped(hi, shape), _shaped(msb, shape), f)

    def comparison_masks(self, count: int) -> ComparisonMask:
        """Comparison masks for ``count`` elements (bit-major, see :class:`ComparisonMask`)."""
        value, bits, pairs = self._take("comparison_masks", (_count_arg(count),), self._gen_comparison)
        return ComparisonMask(_shaped(value, (count,)), _bit_major(bits, count, 64), _bit_major(pairs, count, 32))

    # -- accounting ----------------------------------------------------------------------------

    def _consume(self, key: str, count: int) -> None:
        held = self._reserved.get(key, 0)
        if held:
            used = min(held, count)
            self._reserved[key] = held - used
            count -= used
        if self._left is None or count == 0:
            return
        left = self._left.get(key, 0)
        if count > left:
            raise PreprocessingExhausted(f"preprocessing exhausted: {key} ({count} needed, {left} left)")
        self._left[key] = left - count

    def _buffer(self, key: str) -> _Buffer:
        if key not in self._buffers:
            # comparison masks keep their bits and pair products bit-major (see _gen_comparison)
            self._buffers[key] = _Buffer((1, 2) if key == "comparison_masks" else ())
        return self._buffers[key]

    def _take(self, key: str, shape: tuple[int, ...], generate: Callable[[int], _Columns]) -> _Columns:
        count = shape_size(tuple(shape))
        if count == 0:
            return generate(0)  # empty arrays of the right kinds (nothing is consumed)
        self._consume(key, count)
        return self._buffer(key).take(count, generate)

    def _generator(self, kind: str, arg: str) -> Callable[[int], _Columns]:
        if kind == "triples":
            return self._gen_triples
        if kind == "random_values":
            return self._gen_random
        if kind == "bits":
            return self._gen_bits
        if kind == "input_masks":
            owner = int(arg)
            return lambda c: self._gen_masks(c, owner)
        if kind == "truncation_pairs":
            f = _frac(int(arg))
            return lambda c: self._gen_trunc(c, f)
        if kind == "comparison_masks":
            return self._gen_comparison
        raise ConfigError(f"unknown resource {kind!r}")

    # -- generation ----------------------------------------------------------------------------

    def _stream(self, label: str) -> PRG:
        if label not in self._streams:
            self._streams[label] = PRG.derive(self._seed, label)
        return self._streams[label]

    def _uniform(self, label: str, shape: tuple[int, ...]) -> Z128:
        return r128.uniform(self._stream(label).uint64((*shape, 2)))

    @property
    def _last(self) -> bool:
        return self._party_id == self._n - 1

    def _authenticate(self, label: str, shape: tuple[int, ...], values: Callable[[], Z128]) -> AuthShare:
        """This party's ``(x_i, m_i)`` of values drawn by ``values()`` (evaluated only if needed)."""
        if not self._last:
            me = self._party_id
            return AuthShare.from_parts(
                self._uniform(f"{label}/share/{me}", shape), self._uniform(f"{label}/mac/{me}", shape)
            )
        v = values()
        share, mac = v, r128.mul(v, self._alpha)
        for i in range(self._n - 1):
            share = r128.sub(share, self._uniform(f"{label}/share/{i}", shape))
            mac = r128.sub(mac, self._uniform(f"{label}/mac/{i}", shape))
        return AuthShare.from_parts(share, mac)

    def _gen_triples(self, count: int) -> _Columns:
        a = b = None
        if self._last:
            a, b = self._uniform("triples/a", (count,)), self._uniform("triples/b", (count,))
        return (
            self._authenticate("triples/a", (count,), lambda: a),  # type: ignore[arg-type,return-value]
            self._authenticate("triples/b", (count,), lambda: b),  # type: ignore[arg-type,return-value]
            self._authenticate("triples/c", (count,), lambda: r128.mul(a, b)),  # type: ignore[arg-type]
        )

    def _gen_matrix(self, count: int, m: int, k: int, n: int) -> _Columns:
        label = f"matrix_triples/{m}x{k}x{n}"
        a = b = None
        if self._last:
            a, b = self._uniform(f"{label}/a", (count, m, k)), self._uniform(f"{label}/b", (count, k, n))
        cols = (
            self._authenticate(f"{label}/a", (count, m, k), lambda: a),  # type: ignore[arg-type,return-value]
            self._authenticate(f"{label}/b", (count, k, n), lambda: b),  # type: ignore[arg-type,return-value]
            self._authenticate(f"{label}/c", (count, m, n), lambda: r128.matmul(a, b)),  # type: ignore[arg-type]
        )
        return tuple(AuthShare(c.data.reshape(2, count, -1)) for c in cols)  # type: ignore[union-attr]

    def _gen_masks(self, count: int, owner: int) -> _Columns:
        label = f"input_masks/{owner}"
        needs_value = self._last or self._party_id == owner
        r = self._uniform(label, (count,)) if needs_value else None
        mask = self._authenticate(label, (count,), lambda: r)  # type: ignore[arg-type,return-value]
        return (mask, r.lo.copy() if (r is not None and self._party_id == owner) else None)

    def _gen_random(self, count: int) -> _Columns:
        return (self._authenticate("random_values", (count,), lambda: self._uniform("random_values", (count,))),)

    def _gen_bits(self, count: int) -> _Columns:
        def values() -> Z128:
            raw = self._stream("bits").buffer(count) & np.uint8(1)  # one byte per bit: chunk-independent
            return r128.from_u64(raw.astype(np.uint64))

        return (self._authenticate("bits", (count,), values),)

    def _gen_comparison(self, count: int) -> _Columns:
        label = "comparison_masks"
        raw = None
        if self._last:  # one byte per bit, element by element: chunk-independent
            raw = (self._stream(f"{label}/bits").buffer(64 * count) & np.uint8(1)).reshape(count, 64).astype(np.uint64)

        def bits() -> Z128:
            return r128.from_u64(raw)  # type: ignore[arg-type]

        def pairs() -> Z128:
            return r128.from_u64(raw[:, 0::2] * raw[:, 1::2])  # type: ignore[index]

        b = self._authenticate(f"{label}/bits", (count, 64), bits)
        t = self._authenticate(f"{label}/high", (count,), lambda: self._uniform(f"{label}/high", (count,)))
        weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
        r = r128.add(r128.sum(r128.mul_u64(b.data, weights), axis=2), r128.shl(t.data, 64))  # local, as a real provider
        q = self._authenticate(f"{label}/pairs", (count, 32), pairs)
        return (AuthShare(r), _transposed(b), _transposed(q))  # bits and products bit-major: (2, width, count)

    def _gen_trunc(self, count: int, f: int) -> _Columns:
        label = f"truncation_pairs/{f}"
        r = self._uniform(label, (count,)) if self._last else None

        def high() -> Z128:
            low63 = r.lo & np.uint64((1 << 63) - 1)  # type: ignore[union-attr]
            return r128.from_u64(low63 >> np.uint64(f))

        def msb() -> Z128:
            return r128.from_u64(r.lo >> np.uint64(63))  # type: ignore[union-attr]

        return (
            self._authenticate(label, (count,), lambda: r),  # type: ignore[arg-type,return-value]
            self._authenticate(f"{label}/high", (count,), high),
            self._authenticate(f"{label}/msb", (count,), msb),
        )


def _transposed(column: AuthShare) -> AuthShare:
    """Element-major ``(2, count, width)`` material as a contiguous bit-major ``(2, width, count)`` one."""
    data = column.data
    return AuthShare(Z128(np.ascontiguousarray(data.lo.transpose(0, 2, 1)), np.ascontiguousarray(data.hi.transpose(0, 2, 1))))


def _bit_major(column: AuthShare | np.ndarray | None, count: int, width: int) -> AuthShare:
    """Bit-major ``(width, count)`` material taken from the buffer, checked."""
    if not isinstance(column, AuthShare) or column.data.shape != (2, width, count):
        raise ConfigError("internal: expected bit-major shares")
    return column


def _count_arg(count: int) -> int:
    return check_int(count, "count", lo=0, numpy=True)


def _frac(frac_bits: int) -> int:
    return check_int(frac_bits, "frac_bits", lo=1, hi=62, numpy=True)


def _shaped(column: AuthShare | np.ndarray | None, shape: tuple[int, ...]) -> AuthShare:
    if not isinstance(column, AuthShare):
        raise ConfigError("internal: expected shares")
    if len(shape) == 1 and column.data.lo.ndim == 2:  # a flat column is already (2, count)
        return column
    return column.reshape(tuple(shape))


async def insecure_dealer(
    session: Session, *, allow_insecure: bool = False, capacity: Requirements | None = None
) -> InsecureDealer:
    """An :class:`InsecureDealer` for every party of ``session`` from a fresh seed.

    Party 0 draws the dealer seed from its PRG and sends it to every other party (one round),
    which is exactly what makes the dealer insecure: everyone knows everything.

    Raises:
        InsecureConfiguration: ``allow_insecure`` is not ``True`` (checked before any message).
        ProtocolViolation: party 0 sent something other than a 16-byte seed.
    """
    if allow_insecure is not True:
        raise InsecureConfiguration("insecure_dealer needs allow_insecure=True (tests and benchmarks only)")
    sub = session.child("insecure-dealer")
    seed = sub.prg.bytes(SEED_BYTES) if sub.party_id == 0 else None
    got = await sub.broadcast("seed", seed, sender=0)
    if not isinstance(got, bytes) or len(got) != SEED_BYTES:
        from mpc.errors import ProtocolViolation

        raise ProtocolViolation("party 0 sent an invalid dealer seed")
    return InsecureDealer(session.party_id, session.n_parties, got, allow_insecure=True, capacity=capacity)
