"""Secret arrays with numpy semantics: ``+ - * / @``, ``< <= > >= == !=``, indexing, ``sum``...

A :class:`SecretArray` is this party's handle on an authenticated sharing of an array of
integers (``frac_bits == 0``) or fixed-point reals (``frac_bits == f``, the engine's). Linear
operations are local; ``*`` and ``@`` between secret arrays record a Beaver multiplication
(plus a truncation when both operands are fixed point) that runs at the next flush, batched with
every other recorded operation of its level (see :mod:`protocols.spdz.engine`).

Public operands: Python numbers and numpy arrays. A float (or an int added to or multiplying a
fixed-point array) is encoded with ``f`` fractional bits; ints stay integers. Mixing an integer
array with a fixed-point one promotes the integers (a local multiplication by ``2^f``).

Comparisons (``<`` and the rest, ``abs``, ``sign``, ``relu``, ``max``, ``argmax``...) return
integer 0/1 (or index) arrays, computed exactly by :mod:`protocols.spdz.ordering`; since ``==``
is elementwise, secret arrays are not hashable.

Ranges: integers wrap modulo 2^64 (two's complement); fixed-point values follow
:mod:`mpc.fixedpoint` (products ``|a * b| < 2^(62 - 2f)`` for an exact truncation, whose result
is within one unit of ``2^-f`` of the exact product, rounded stochastically). Dividing by a
public ``c`` multiplies by the encoding of ``1 / c``, which is within ``2^-(f+1)`` of ``1 / c``:
the absolute error of ``x / c`` is at most ``|x| 2^-(f+1) + 2^-f`` (``mean`` likewise, on the
sum); dividing by a power of two is exact up to the truncation's one unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from mpc import fixedpoint
from mpc import ring128 as r128
from mpc.errors import ConfigError
from mpc.ring import encode_int
from protocols.spdz import shares as sh
from protocols.spdz.shares import AuthShare

if TYPE_CHECKING:
    from protocols.spdz.engine import Engine

__all__ = ["SecretArray", "concatenate", "stack", "where"]

_ZERO_BYTE = bytes(1)


def _probe(shape: tuple[int, ...]) -> np.ndarray:
    """A zero-stride (read-only) array of ``shape`` for working out result shapes with numpy itself."""
    return np.ndarray(shape, dtype=np.uint8, buffer=_ZERO_BYTE, strides=(0,) * len(shape))


def _result_shape(fn: Callable[..., Any], *args: Any) -> tuple[int, ...]:
    """The shape numpy gives ``fn(*args)`` (on probes or shapes), as a ConfigError if invalid."""
    try:
        out = fn(*args)
    except (ValueError, IndexError, TypeError) as exc:
        raise ConfigError(f"invalid shapes for this operation: {exc}") from None
    return tuple(out if isinstance(out, tuple) else out.shape)


class SecretArray:
    """A secret-shared array (see the module docstring). Create with the engine's ``input``.

    Attributes:
        shape: the array's shape (public).
        frac_bits: 0 for integers, the engine's ``f`` for fixed point (public).
    """

    __slots__ = ("_engine", "shape", "frac_bits", "_value", "_deps", "_compute", "_interactive")
    __array_ufunc__ = None  # numpy defers to our reflected operators (np_array * secret)

    def __init__(
        self,
        engine: Engine,
        shape: tuple[int, ...],
        frac_bits: int,
        *,
        value: AuthShare | None = None,
        deps: tuple[SecretArray, ...] = (),
        compute: Callable[..., Any] | None = None,
        interactive: bool = False,
    ) -> None:
        self._engine = engine
        self.shape = tuple(shape)
        self.frac_bits = frac_bits
        self._value = value
        self._deps = deps
        self._compute = compute
        self._interactive = interactive

    def _resolve(self, value: AuthShare) -> None:
        if value.shape != self.shape:
            raise ConfigError(f"internal: node of shape {self.shape} computed {value.shape}")
        self._value = value
        self._deps = ()
        self._compute = None

    # -- metadata ----------------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_fixed(self) -> bool:
        """Whether the array holds fixed-point reals."""
        return self.frac_bits > 0

    @property
    def ready(self) -> bool:
        """Whether the shares are computed (no flush needed)."""
        return self._value is not None

    @property
    def engine(self) -> Engine:
        """The engine this array belongs to."""
        return self._engine

    def shares(self) -> AuthShare:
        """This party's authenticated shares (hazmat; the array must be ready)."""
        if self._value is None:
            raise ConfigError("the array is not computed yet; flush the engine first")
        return self._value

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d secret array")
        return self.shape[0]

    def __bool__(self) -> bool:
        raise ConfigError("a secret array has no truth value; reveal it or use where()")

    def __repr__(self) -> str:
        kind = f"fixed(f={self.frac_bits})" if self.frac_bits else "int"
        state = "ready" if self.ready else "pending"
        return f"SecretArray(shape={self.shape}, {kind}, {state})"

    # -- helpers --------------------------------------------------------------------------------

    def _linear(self, fn: Callable[..., AuthShare], deps: Sequence[SecretArray], shape: Callable[[], tuple[int, ...]], frac: int) -> SecretArray:
        return self._engine.linear(fn, deps, shape, frac)

    def _unary(self, fn: Callable[[AuthShare], AuthShare], probe: Callable[[np.ndarray], np.ndarray]) -> SecretArray:
        shape = _result_shape(probe, _probe(self.shape))  # invalid index or axes: ConfigError
        return self._linear(fn, [self], lambda: shape, self.frac_bits)

    def _other(self, other: Any) -> SecretArray | None:
        if isinstance(other, SecretArray):
            if other._engine is not self._engine:
                raise ConfigError("secret arrays of different engines")
            return other
        return None

    def _public(self, value: Any, for_mul: bool) -> tuple[np.ndarray, int]:
        """Encode a public operand: (uint64 ring values, their frac bits)."""
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise ConfigError(f"cannot combine a secret array with dtype {arr.dtype}")
        f = self._engine.frac_bits
        if arr.dtype.kind == "f":
            return fixedpoint.encode(arr, f), f
        ints = arr.astype(np.int64) if arr.dtype.kind == "b" else arr
        if not for_mul and self.frac_bits:
            return fixedpoint.encode(ints, f), f
        return encode_int(ints), 0

    def _to_frac(self, frac: int) -> SecretArray:
        if frac == self.frac_bits:
            return self
        if self.frac_bits != 0:
            raise ConfigError("internal: can only promote integers to fixed point")
        return self._linear(lambda a: sh.shl(a, frac), [self], lambda: self.shape, frac)

    # -- linear operations --------------------------------------------------------------------------

    def __add__(self, other: Any) -> SecretArray:
        o = self._other(other)
        if o is not None:
            frac = max(self.frac_bits, o.frac_bits)
            a, b = self._to_frac(frac), o._to_frac(frac)
            shape = self.shape if self.shape == o.shape else _result_shape(np.broadcast_shapes, self.shape, o.shape)
            return self._linear(sh.add, [a, b], lambda: shape, frac)
        c, fc = self._public(other, for_mul=False)
        frac = max(self.frac_bits, fc)
        a = self._to_frac(frac)
        eng = self._engine
        shape = _result_shape(np.broadcast_shapes, self.shape, c.shape)
        return self._linear(lambda x: sh.add_public(x, c, eng.party_id, eng.key_share), [a], lambda: shape, frac)

    __radd__ = __add__

    def __neg__(self) -> SecretArray:
        return self._linear(sh.neg, [self], lambda: self.shape, self.frac_bits)

    def __pos__(self) -> SecretArray:
        return self

    def __sub__(self, other: Any) -> SecretArray:
        o = self._other(other)
        if o is not None:  # one node: a - b equals a + (-b) modulo 2^128
            frac = max(self.frac_bits, o.frac_bits)
            a, b = self._to_frac(frac), o._to_frac(frac)
            shape = self.shape if self.shape == o.shape else _result_shape(np.broadcast_shapes, self.shape, o.shape)
            return self._linear(sh.sub, [a, b], lambda: shape, frac)
        arr = np.asarray(other)
        return self + (-(arr.astype(np.int64) if arr.dtype.kind in "bu" else arr))

    def __rsub__(self, other: Any) -> SecretArray:
        if self._other(other) is not None:
            return other - self
        # one node: c - x is (-x) + c, as ``(-self) + other`` computes it
        c, fc = self._public(other, for_mul=False)
        frac = max(self.frac_bits, fc)
        a = self._to_frac(frac)
        eng = self._engine
        shape = _result_shape(np.broadcast_shapes, self.shape, c.shape)
        return self._linear(lambda x: sh.add_public(sh.neg(x), c, eng.party_id, eng.key_share), [a], lambda: shape, frac)

    # -- products -----------------------------------------------------------------------------

    def __mul__(self, other: Any) -> SecretArray:
        o = self._other(other)
        if o is not None:
            return _bilinear("mul", self, o, _result_shape(np.broadcast_shapes, self.shape, o.shape))
        c, fc = self._public(other, for_mul=True)
        shape = _result_shape(np.broadcast_shapes, self.shape, c.shape)
        product = self._linear(lambda x: sh.mul_public(x, c), [self], lambda: shape, self.frac_bits + fc)
        return _maybe_truncate(product)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> SecretArray:
        if isinstance(other, SecretArray):
            raise ConfigError("division by a secret array is not supported")
        divisor = np.asarray(other, dtype=np.float64)
        if divisor.size == 0 or not np.all(np.isfinite(divisor)) or np.any(divisor == 0):
            raise ConfigError("division by zero or by a non-finite value")
        return self * (1.0 / divisor)

    def __matmul__(self, other: Any) -> SecretArray:
        o = self._other(other)
        if o is not None:
            if self.ndim not in (1, 2) or o.ndim not in (1, 2):
                raise ConfigError("secret @ secret supports 1-d and 2-d operands (no batches yet)")
            shape = _result_shape(np.matmul, _probe(self.shape), _probe(o.shape))
            return _bilinear("matmul", self, o, shape)
        return _public_matmul(self, other, right=True)

    def __rmatmul__(self, other: Any) -> SecretArray:
        return _public_matmul(self, other, right=False)

    def dot(self, other: Any) -> SecretArray:
        """Matrix or inner product (``@`` for 1-d and 2-d operands)."""
        return self @ other

    # -- comparisons (exact, by bit decomposition; see protocols.spdz.ordering) ----------------------

    def __lt__(self, other: Any) -> SecretArray:
        from protocols.spdz import ordering

        return ordering.less(self, other)

    def __le__(self, other: Any) -> SecretArray:
        from protocols.spdz import ordering

        return ordering.less_equal(self, other)

    def __gt__(self, other: Any) -> SecretArray:
        from protocols.spdz import ordering

        return ordering.greater(self, other)

    def __ge__(self, other: Any) -> SecretArray:
        from protocols.spdz import ordering

        return ordering.greater_equal(self, other)

    def __eq__(self, other: Any) -> SecretArray:  # type: ignore[override]
        from protocols.spdz import ordering

        return ordering.equal(self, other)

    def __ne__(self, other: Any) -> SecretArray:  # type: ignore[override]
        from protocols.spdz import ordering

        return ordering.not_equal(self, other)

    __hash__ = None  # type: ignore[assignment]  # == is elementwise, as in numpy

    def __abs__(self) -> SecretArray:
        from protocols.spdz import ordering

        return ordering.absolute(self)

    def sign(self) -> SecretArray:
        """-1, 0 or 1 (an integer array) as each element is negative, zero or positive."""
        from protocols.spdz import ordering

        return ordering.sign(self)

    def relu(self) -> SecretArray:
        """``max(x, 0)`` elementwise."""
        from protocols.spdz import ordering

        return ordering.relu(self)

    def max(self, axis: int | None = None) -> SecretArray:
        """Maximum over ``axis`` (everything when ``None``)."""
        from protocols.spdz import ordering

        return ordering.reduce_max(self, axis)

    def min(self, axis: int | None = None) -> SecretArray:
        """Minimum over ``axis`` (everything when ``None``)."""
        from protocols.spdz import ordering

        return ordering.reduce_min(self, axis)

    def argmax(self, axis: int | None = None, *, one_hot: bool = False) -> SecretArray:
        """Index (or one-hot vector) of the first maximum over ``axis``; see ``ordering.argmax``."""
        from protocols.spdz import ordering

        return ordering.argmax(self, axis, one_hot=one_hot)  # type: ignore[no-any-return]

    def argmin(self, axis: int | None = None, *, one_hot: bool = False) -> SecretArray:
        """Index (or one-hot vector) of the first minimum over ``axis``."""
        from protocols.spdz import ordering

        return ordering.argmin(self, axis, one_hot=one_hot)  # type: ignore[no-any-return]

    # -- structure ----------------------------------------------------------------------------------

    def __getitem__(self, index: Any) -> SecretArray:
        if isinstance(index, SecretArray):
            raise ConfigError("indexing with a secret array is not supported")
        return self._unary(lambda a: a[index], lambda p: p[index])

    def reshape(self, *shape: Any) -> SecretArray:
        """The same elements in another shape (numpy semantics)."""
        target = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return self._unary(lambda a: a.reshape(tuple(target)), lambda p: p.reshape(tuple(target)))

    def flatten(self) -> SecretArray:
        """A 1-d copy."""
        return self.reshape(-1)

    ravel = flatten

    def transpose(self, *axes: Any) -> SecretArray:
        """Permuted axes (reversed by default)."""
        order = None if not axes else tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else tuple(axes)
        return self._unary(lambda a: a.transpose(order), lambda p: p.transpose(order))

    @property
    def T(self) -> SecretArray:  # noqa: N802 (numpy name)
        """The transpose."""
        return self.transpose()

    def sum(self, axis: int | tuple[int, ...] | None = None) -> SecretArray:
        """Sum over ``axis`` (everything when ``None``)."""
        return self._unary(lambda a: a.sum(axis), lambda p: np.sum(p, axis=axis))

    def mean(self, axis: int | tuple[int, ...] | None = None) -> SecretArray:
        """Mean over ``axis`` (fixed point; an integer array's mean is fixed point)."""
        total = self.sum(axis)
        count = self.size // max(total.size, 1) if self.size else 0
        if count == 0:
            raise ConfigError("mean of an empty array")
        return total / float(count)

    def broadcast_to(self, shape: tuple[int, ...]) -> SecretArray:
        """Broadcast to ``shape`` (numpy semantics; a copy when used)."""
        target = tuple(shape)
        return self._unary(lambda a: a.broadcast_to(target), lambda p: np.broadcast_to(p, target))


def _maybe_truncate(x: SecretArray) -> SecretArray:
    """Bring a product with ``2f`` fractional bits back to ``f`` (one round)."""
    f = x._engine.frac_bits
    if x.frac_bits <= f:
        return x
    return x._engine.interactive(x._engine.truncate_gen(), [x], x.shape, x.frac_bits - f)


def _bilinear(op: str, x: SecretArray, y: SecretArray, shape: tuple[int, ...]) -> SecretArray:
    eng = x._engine
    frac = x.frac_bits + y.frac_bits
    f = eng.frac_bits
    truncate = frac > f
    return eng.interactive(eng.bilinear_gen(op, truncate), [x, y], shape, frac - f if truncate else frac)


def _public_matmul(x: SecretArray, other: Any, right: bool) -> SecretArray:
    """``x @ P`` (``right``) or ``P @ x`` for a public ``P``: local, numpy ``matmul`` semantics."""
    c, fc = x._public(other, for_mul=True)
    left_shape, right_shape = (x.shape, c.shape) if right else (c.shape, x.shape)
    shape = _result_shape(np.matmul, _probe(left_shape), _probe(right_shape))
    pub = r128.from_u64(c)

    def compute(a: AuthShare) -> AuthShare:
        data = a.data
        if a.ndim == 1:  # a 1-d secret becomes a row (x @ P) or column (P @ x) matrix
            data = data.reshape(2, 1, -1) if right else data.reshape(2, -1, 1)
        # The pair axis (value shares, MAC shares) of the shares is a matmul batch axis.
        out = r128.matmul(data, pub) if right else r128.matmul(pub, data)
        return AuthShare(out.reshape(2, *shape))

    product = x._linear(compute, [x], lambda: shape, x.frac_bits + fc)
    return _maybe_truncate(product)


def concatenate(arrays: Sequence[SecretArray], axis: int = 0) -> SecretArray:
    """Join secret arrays along an existing axis (numpy semantics; fixed point if any is)."""
    items = _same_kind(arrays)
    shape = _result_shape(lambda: np.concatenate([_probe(a.shape) for a in items], axis=axis))
    return items[0]._linear(lambda *v: sh.concatenate(v, axis), items, lambda: shape, items[0].frac_bits)


def stack(arrays: Sequence[SecretArray], axis: int = 0) -> SecretArray:
    """Join secret arrays along a new axis (numpy semantics; fixed point if any is)."""
    items = _same_kind(arrays)
    shape = _result_shape(lambda: np.stack([_probe(a.shape) for a in items], axis=axis))
    return items[0]._linear(lambda *v: sh.stack(v, axis), items, lambda: shape, items[0].frac_bits)


def _same_kind(arrays: Sequence[SecretArray]) -> list[SecretArray]:
    items = list(arrays)
    if not items or any(not isinstance(a, SecretArray) for a in items):
        raise ConfigError("expected a non-empty sequence of secret arrays")
    if any(a._engine is not items[0]._engine for a in items):
        raise ConfigError("secret arrays of different engines")
    frac = max(a.frac_bits for a in items)
    return [a._to_frac(frac) for a in items]


def where(condition: SecretArray, a: Any, b: Any) -> SecretArray:
    """``a`` where the secret bits ``condition`` are 1, else ``b``: ``b + condition * (a - b)``.

    ``condition`` must hold 0/1 integers (e.g. a comparison result); ``a`` and ``b`` are secret
    arrays or public values. One multiplication (none if both are public).
    """
    if not isinstance(condition, SecretArray) or condition.frac_bits:
        raise ConfigError("where() needs an integer secret array of bits as condition")
    if isinstance(a, SecretArray):
        diff: Any = a - b
    elif isinstance(b, SecretArray):
        diff = (-b) + a
    else:
        diff = np.asarray(a) - np.asarray(b)
    return condition * diff + b
