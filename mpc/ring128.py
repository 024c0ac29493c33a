"""Arithmetic in the ring Z_2^128, vectorized over numpy as two uint64 limbs.

An element is ``lo + 2^64 * hi`` with ``lo`` and ``hi`` uint64 arrays of the same shape; a
:class:`Z128` holds the two limbs of an array of elements (a scalar is a 0-d array). SPDZ2k
(k = 64, s = 64) keeps shares, MACs and the MAC key in this ring: values live in the low 64
bits, the high 64 bits carry the statistical security of the MACs.

Every function is pure (returns new arrays, never modifies its arguments) and follows numpy
broadcasting. The products are exact modulo 2^128: the 64x64 -> 128-bit product of the low
limbs is formed from 32-bit halves, each partial product fitting in a uint64; matrix products
split both operands into 16-bit limbs and multiply them in float64 (exact while the inner
dimension is at most 2^21, checked) so they run on BLAS, except small ones (at most 2^14
scalar products), which are elementwise products summed over the inner axis.

Small arrays (the rounds of training and comparisons) cost per numpy call rather than per
element, so the operations avoid Python overhead where they can: results are built without
re-validating limbs computed here, and same-shape operands skip the broadcasting bookkeeping.
Large ones (over ``2 * 2^15`` elements, C-contiguous, same shape or one row broadcast over the
first axis) go to the compiled loops of :mod:`mpc.kernels` for ``add``, ``sub``,
``add_products`` and ``dot_u64``: the same arithmetic, about 4x faster for the products and 1.5x
for sums and differences (memory-bound); the numpy path stays the reference and serves every
other layout.
"""

from __future__ import annotations

import builtins
import functools
import logging
import math
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from mpc.checks import check_int
from mpc.compiled import optional_kernels
from mpc.errors import ConfigError

_log = logging.getLogger(__name__)

__all__ = [
    "Z128",
    "MODULUS",
    "MAX_MATMUL_INNER",
    "zeros",
    "from_u64",
    "from_i64",
    "from_int",
    "to_int",
    "uniform",
    "blocked",
    "load_kernels",
    "add",
    "sub",
    "neg",
    "mul",
    "add_products",
    "mul_u64",
    "mul_wide_u64",
    "shl",
    "shr",
    "equal",
    "less",
    "sum",
    "matmul",
    "dot_u64",
    "dot_u64_parts",
    "concatenate",
    "stack",
    "take_along_axis",
]

MODULUS = 1 << 128
_U64 = np.dtype(np.uint64)
_MASK32 = np.uint64(0xFFFFFFFF)
_MASK64 = (1 << 64) - 1
_S32 = np.uint64(32)
MAX_MATMUL_INNER = 1 << 21
"""Largest inner dimension of :func:`matmul`: its 16-bit limb products summed over k stay below
2^53, exact in float64."""
_MAX_SUM_COUNT = 1 << 32  # 32-bit halves summed in uint64 without overflow
_SMALL_MATMUL = 1 << 14  # products (batch * m * k * n) up to which matmul is elementwise
_MASK16 = np.uint64(0xFFFF)
_SHIFTS16 = np.arange(0, 64, 16, dtype=np.uint64)
_SHIFTS32 = np.array([[0], [32]], dtype=np.uint64)
_SMALL_DOT = 1 << 11  # elements up to which dot_u64 takes limb dot products (fewer steps)


class Z128:
    """An array of Z_2^128 elements: ``lo + 2^64 * hi``.

    Args:
        lo: the low limbs (uint64 array).
        hi: the high limbs (uint64 array, broadcast to ``lo``'s shape if needed).

    Raises:
        ConfigError: a limb is not uint64 or the shapes do not broadcast.

    Example:
        >>> x = from_int([3, -1])
        >>> to_int(mul(x, x)).tolist()
        [9, 1]
    """

    __slots__ = ("lo", "hi")

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        if not isinstance(lo, np.ndarray):
            lo = _as_limb(lo)
        if not isinstance(hi, np.ndarray):
            hi = _as_limb(hi)
        if lo.dtype != _U64 or hi.dtype != _U64:
            raise ConfigError(f"Z128 limbs must be uint64, got {lo.dtype} and {hi.dtype}")
        if lo.shape != hi.shape:
            try:
                shape = np.broadcast_shapes(lo.shape, hi.shape)
            except ValueError:
                raise ConfigError(f"limb shapes {lo.shape} and {hi.shape} differ") from None
            lo, hi = np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)
        self.lo = lo
        self.hi = hi

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array of elements."""
        return self.lo.shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.lo.ndim

    @property
    def size(self) -> int:
        """Number of elements."""
        return self.lo.size

    def __getitem__(self, index: Any) -> Z128:
        lo = self.lo[index]
        if isinstance(lo, np.ndarray):
            return _z(lo, self.hi[index])
        return Z128(lo, self.hi[index])  # an integer index of every axis: numpy scalars

    def reshape(self, *shape: Any) -> Z128:
        """The same elements in another shape (numpy ``reshape`` semantics)."""
        return _z(self.lo.reshape(*shape), self.hi.reshape(*shape))

    def transpose(self, *axes: Any) -> Z128:
        """Permuted axes (numpy ``transpose`` semantics)."""
        return _z(self.lo.transpose(*axes), self.hi.transpose(*axes))

    @property
    def T(self) -> Z128:  # noqa: N802 (numpy name)
        """The transpose (reversed axes)."""
        return _z(self.lo.T, self.hi.T)

    def broadcast_to(self, shape: tuple[int, ...]) -> Z128:
        """A read-only broadcast view of ``shape``."""
        return _z(np.broadcast_to(self.lo, shape), np.broadcast_to(self.hi, shape))

    def copy(self) -> Z128:
        """A contiguous, writable copy."""
        return _z(np.array(self.lo, copy=True), np.array(self.hi, copy=True))

    def __add__(self, other: Z128) -> Z128:
        return add(self, other)

    def __sub__(self, other: Z128) -> Z128:
        return sub(self, other)

    def __neg__(self) -> Z128:
        return neg(self)

    def __mul__(self, other: Z128) -> Z128:
        return mul(self, other)

    def __lshift__(self, bits: int) -> Z128:
        return shl(self, bits)

    def __rshift__(self, bits: int) -> Z128:
        return shr(self, bits)

    def __repr__(self) -> str:
        return f"Z128(shape={self.shape})"


def _as_limb(x: object) -> np.ndarray:
    """A numpy scalar (what numpy returns for 0-d results) as a 0-d array."""
    if not isinstance(x, np.generic):
        raise ConfigError("Z128 limbs must be numpy arrays")
    return np.asarray(x)


_new = object.__new__


def _z(lo: np.ndarray, hi: np.ndarray) -> Z128:
    """A :class:`Z128` from limbs that are uint64 arrays of one shape by construction (unchecked).

    The ring operations build their results with it: validating limbs they have just computed
    costs more than the arithmetic on the small arrays of a training round.
    """
    z = _new(Z128)
    z.lo = lo
    z.hi = hi
    return z


# -- construction and conversion -------------------------------------------------------------


def zeros(shape: int | tuple[int, ...] = ()) -> Z128:
    """The zero element, in ``shape``."""
    return _z(np.zeros(shape, dtype=_U64), np.zeros(shape, dtype=_U64))


def from_u64(x: np.ndarray) -> Z128:
    """Lift Z_2^64 elements (uint64) to Z_2^128 by zero extension (the canonical lift)."""
    lo = np.asarray(x)
    if lo.dtype != _U64:
        raise ConfigError(f"from_u64 needs a uint64 array, got {lo.dtype}")
    return _z(lo, np.zeros(lo.shape, dtype=_U64))


def from_i64(x: np.ndarray) -> Z128:
    """Embed signed 64-bit integers (int64) into Z_2^128 by sign extension."""
    arr = np.asarray(x)
    if arr.dtype != np.int64:
        raise ConfigError(f"from_i64 needs an int64 array, got {arr.dtype}")
    return Z128(arr.view(_U64), (arr >> np.int64(63)).view(_U64))


def from_int(values: Any) -> Z128:
    """Python integers (any nesting numpy accepts) reduced modulo 2^128.

    Raises:
        ConfigError: a value is not an integer or lies outside [-2^127, 2^128).
    """
    arr = np.asarray(values, dtype=object)
    flat = arr.reshape(-1)
    lo = np.empty(flat.shape, dtype=_U64)
    hi = np.empty(flat.shape, dtype=_U64)
    # A loop over Python ints: this is a conversion helper for tests and constants, not a
    # protocol path (numpy cannot hold integers wider than 64 bits).
    for i, v in enumerate(flat):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ConfigError(f"from_int needs integers, got {type(v).__name__}")
        iv = int(v)
        if not -(1 << 127) <= iv < MODULUS:
            raise ConfigError("integer outside [-2^127, 2^128)")
        iv %= MODULUS
        lo[i] = iv & _MASK64
        hi[i] = iv >> 64
    return Z128(lo.reshape(arr.shape), hi.reshape(arr.shape))


def to_int(x: Z128) -> np.ndarray:
    """The elements as Python integers in [0, 2^128), in an object array of ``x``'s shape."""
    lo = x.lo.astype(object)
    hi = x.hi.astype(object)
    return np.asarray(lo + hi * (1 << 64), dtype=object).reshape(x.shape)


def uniform(random_u64: np.ndarray) -> Z128:
    """Uniform elements from uniform uint64 words, two per element.

    Args:
        random_u64: uniform uint64 words of shape ``(*shape, 2)``; word ``[..., 0]`` becomes the
            low limb, so a stream of words maps to elements independently of how it is chunked.
    """
    if random_u64.dtype != _U64 or random_u64.ndim < 1 or random_u64.shape[-1] != 2:
        raise ConfigError("uniform needs uint64 words of shape (..., 2)")
    return Z128(np.ascontiguousarray(random_u64[..., 0]), np.ascontiguousarray(random_u64[..., 1]))


# -- ring operations ---------------------------------------------------------------------------

_BLOCK = 1 << 15  # elements per block: the temporaries of a product stay in the L2 cache


def blocked(kernel: Callable[..., Z128], *operands: Z128) -> Z128:
    """Apply an elementwise ``kernel`` to broadcast operands block by block.

    numpy evaluates an expression one full-size temporary at a time, so a 128-bit product of
    10^6 elements streams ~20 arrays through main memory; cut into blocks of 2^15 elements the
    temporaries stay in cache (about 8x faster here). The blocks are slices along the longest
    axis of the broadcast shape; the kernel must be elementwise (and may be any composition of
    this module's operations).

    Args:
        kernel: ``kernel(*blocks) -> Z128`` with the blocks' broadcast shape.
        operands: the arrays, broadcast together.

    Returns:
        ``kernel(*operands)``, computed block by block.
    """
    shape = operands[0].shape
    for o in operands:
        if o.shape != shape:
            shape = np.broadcast_shapes(*(o.shape for o in operands))
            break
    if shape == ():
        # numpy turns 0-d results into scalars, whose arithmetic warns on wrap-around.
        return kernel(*(o.reshape(1) for o in operands)).reshape(())
    size = math.prod(shape)
    if size <= 2 * _BLOCK:
        return kernel(*operands)
    axis = int(np.argmax(shape))
    extent = shape[axis]
    step = max(1, _BLOCK * extent // size)
    views = [o.broadcast_to(shape) for o in operands]
    lo = np.empty(shape, dtype=_U64)
    hi = np.empty(shape, dtype=_U64)
    index: list[Any] = [slice(None)] * len(shape)
    # A loop over blocks, not elements: each iteration is a handful of vectorized operations.
    for start in range(0, extent, step):
        index[axis] = slice(start, start + step)
        where = tuple(index)
        part = kernel(*(v[where] for v in views))
        lo[where] = part.lo
        hi[where] = part.hi
    return _z(lo, hi)


_KERNEL_MIN = 2 * _BLOCK + 1
"""Elements from which :mod:`mpc.kernels` runs an operation (where :func:`blocked` would)."""


def _kernel_rows(limbs: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray] | None:
    """``limbs`` as the 2-d operands of a :mod:`mpc.kernels` loop over ``shape``, or ``None``.

    ``None`` for fewer than :data:`_KERNEL_MIN` elements or a layout the kernels do not take:
    every limb must be of ``shape`` or (for 2-d and more) of ``(1, *shape[1:])``, one row
    broadcast over the first axis, aligned, and C-contiguous or 2-d with contiguous rows (e.g. a
    slice of the columns of a wider array).
    """
    if len(shape) == 0 or math.prod(shape) < _KERNEL_MIN:
        return None
    rows = shape[0] if len(shape) > 1 else 1
    broadcast_row = (1, *shape[1:])
    out = []
    # A loop over the few operands, not elements.
    for limb in limbs:
        if not limb.flags.aligned or not (limb.flags.c_contiguous or (limb.ndim == 2 and limb.strides[1] == 8)):
            return None
        if limb.shape == shape:
            out.append(limb.reshape(rows, -1))
        elif len(shape) > 1 and limb.shape == broadcast_row:
            out.append(limb.reshape(1, -1))
        else:
            return None
    return out


@functools.cache
def _kernels() -> ModuleType | None:
    """:mod:`mpc.kernels`, imported on first use (numba), or ``None`` if it cannot be imported:
    then the numpy path serves every operation (same results, slower) and a warning says so."""
    return optional_kernels("mpc.kernels", _log, "large operations use numpy")


def load_kernels() -> bool:
    """Import :mod:`mpc.kernels` now (numba; its compiled code loaded from the disk cache, or
    compiled on a machine's first use), so that the first large operation of a computation does
    not pay for it: about half a second once per process, or two on a machine's first use.

    Returns:
        Whether the kernels are available (else large operations take the numpy path).
    """
    return _kernels() is not None


def _by_kernel(
    name: str, operands: Sequence[Z128], out: tuple[np.ndarray, np.ndarray] | None = None
) -> Z128 | None:
    """``kernels.<name>(*limbs, out_lo, out_hi)`` over the operands' broadcast shape (into
    ``out``, limb arrays of that shape, if given), or ``None`` if :func:`_kernel_rows` refuses
    the operands or ``out``."""
    shape = operands[0].shape
    for o in operands:
        if o.shape != shape:
            shape = np.broadcast_shapes(*(o.shape for o in operands))
            break
    limbs = _kernel_rows([limb for o in operands for limb in (o.lo, o.hi)], shape)
    kernels = None if limbs is None else _kernels()
    if limbs is None or kernels is None:
        return None
    if out is None:
        lo, hi = np.empty(shape, dtype=_U64), np.empty(shape, dtype=_U64)
    else:
        lo, hi = out
        if lo.dtype != _U64 or hi.dtype != _U64 or lo.shape != shape or hi.shape != shape:
            raise ConfigError(f"out must be two uint64 arrays of shape {shape}")
    dest = _kernel_rows([lo, hi], shape)
    if dest is None:  # (only a given ``out`` can be refused)
        return None
    kernel = getattr(kernels, name)
    if all(limb.flags.c_contiguous for limb in (*limbs, lo, hi)):
        kernel(*limbs, *dest)
    else:
        # Rows of a wider array: one call per row, each on contiguous (1, n) views (the
        # compiled loop for contiguous operands; a loop over rows, not elements).
        for r in range(dest[0].shape[0]):
            rows = (limb[r : r + 1] if limb.shape[0] > 1 else limb for limb in limbs)
            kernel(*rows, dest[0][r : r + 1], dest[1][r : r + 1])
    return _z(lo, hi)


def _add(a: Z128, b: Z128) -> Z128:
    lo = a.lo + b.lo
    carry = (lo < a.lo).view(np.uint8)
    hi = a.hi + b.hi
    hi += carry
    return _z(lo, hi)


def _sub(a: Z128, b: Z128) -> Z128:
    lo = a.lo - b.lo
    borrow = (a.lo < b.lo).view(np.uint8)
    hi = a.hi - b.hi
    hi -= borrow
    return _z(lo, hi)


def _neg(a: Z128) -> Z128:
    lo = -a.lo  # two's complement per limb, wraps
    borrow = (a.lo != 0).view(np.uint8)
    hi = -a.hi
    hi -= borrow
    return _z(lo, hi)


def _mul_wide(a: np.ndarray, b: np.ndarray) -> Z128:
    # a b = a0 b0 + 2^32 (a1 b0 + a0 b1) + 2^64 a1 b1 with 32-bit halves; every partial sum
    # below stays under 2^64 ((2^32 - 1)^2 + 2 (2^32 - 1) = 2^64 - 1).
    a0 = a & _MASK32
    a1 = a >> _S32
    b0 = b & _MASK32
    b1 = b >> _S32
    t = a0 * b0
    t >>= _S32
    t += a1 * b0
    w = t & _MASK32
    w += a0 * b1
    hi = a1 * b1
    t >>= _S32
    hi += t
    w >>= _S32
    hi += w
    return _z(a * b, hi)


def _mul(a: Z128, b: Z128) -> Z128:
    out = _mul_wide(a.lo, b.lo)
    out.hi += a.lo * b.hi
    out.hi += a.hi * b.lo
    return out


def _mul_u64(a: Z128, c: Z128) -> Z128:
    out = _mul_wide(a.lo, c.lo)
    out.hi += a.hi * c.lo
    return out


def _direct(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether an elementwise operation on limbs ``a`` and ``b`` can skip :func:`blocked`:
    ``a`` small and at least 1-d (no numpy scalars), ``b`` broadcast into ``a``'s shape."""
    sa, sb = a.shape, b.shape
    if not sa or a.size > 2 * _BLOCK:
        return False
    if sa == sb:
        return True
    return len(sb) <= len(sa) and builtins.all(y in (1, x) for x, y in zip(sa[len(sa) - len(sb) :], sb))


def add(a: Z128, b: Z128) -> Z128:
    """``a + b mod 2^128`` (elementwise, broadcasting)."""
    if _direct(a.lo, b.lo):  # the common cases (same shapes, or b broadcast into a), directly
        return _add(a, b)
    out = _by_kernel("add", (a, b))
    return blocked(_add, a, b) if out is None else out


def sub(a: Z128, b: Z128, *, out: tuple[np.ndarray, np.ndarray] | None = None) -> Z128:
    """``a - b mod 2^128`` (elementwise, broadcasting).

    Args:
        out: limb arrays ``(lo, hi)`` of the result's shape to write it into (they are the
            result's limbs); by default new arrays.
    """
    if out is not None:
        res = _by_kernel("sub", (a, b), out=out)
        if res is None:
            res = sub(a, b)
            out[0][...] = res.lo
            out[1][...] = res.hi
        return _z(out[0], out[1])
    if _direct(a.lo, b.lo):
        return _sub(a, b)
    res = _by_kernel("sub", (a, b))
    return blocked(_sub, a, b) if res is None else res


def add_products(c: Z128, a1: Z128, b1: Z128, a2: Z128, b2: Z128) -> Z128:
    """``c + a1 * b1 + a2 * b2 mod 2^128`` in one blocked pass (elementwise, broadcasting)."""
    lo = c.lo
    if _direct(lo, a1.lo) and _direct(lo, b1.lo) and _direct(lo, a2.lo) and _direct(lo, b2.lo):
        return _add_products(c, a1, b1, a2, b2)
    out = _by_kernel("add_products", (c, a1, b1, a2, b2))
    return blocked(_add_products, c, a1, b1, a2, b2) if out is None else out


def _add_products(c: Z128, a1: Z128, b1: Z128, a2: Z128, b2: Z128) -> Z128:
    return _add(_add(c, _mul(a1, b1)), _mul(a2, b2))


def neg(a: Z128) -> Z128:
    """``-a mod 2^128``."""
    if _direct(a.lo, a.lo):
        return _neg(a)
    return blocked(_neg, a)


def mul_wide_u64(a: np.ndarray, b: np.ndarray) -> Z128:
    """The full 128-bit product of two uint64 arrays (elementwise, broadcasting)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == _U64 and b.dtype == _U64 and _direct(a, b):
        return _mul_wide(a, b)
    return blocked(lambda x, y: _mul_wide(x.lo, y.lo), from_u64(np.asarray(a)), from_u64(np.asarray(b)))


def mul(a: Z128, b: Z128) -> Z128:
    """``a * b mod 2^128`` (the low 128 bits of the product), elementwise with broadcasting."""
    if _direct(a.lo, b.lo):
        return _mul(a, b)
    return blocked(_mul, a, b)


def mul_u64(a: Z128, c: np.ndarray) -> Z128:
    """``a * c mod 2^128`` for 64-bit values ``c`` (uint64, read as integers in [0, 2^64))."""
    c = np.asarray(c)
    if c.dtype != _U64:
        raise ConfigError(f"mul_u64 needs a uint64 multiplier, got {c.dtype}")
    if _direct(a.lo, c):
        return _mul_u64(a, _z(c, c))
    return blocked(_mul_u64, a, _z(c, c))  # _mul_u64 reads only the low limb of its multiplier


def shl(a: Z128, bits: int) -> Z128:
    """``a * 2^bits mod 2^128`` for ``0 <= bits < 128``."""
    bits = _check_shift(bits)
    if bits == 0:
        return a.copy()
    if bits >= 64:
        return _z(np.zeros(a.shape, dtype=_U64), _nd(a.lo << np.uint64(bits - 64)))
    s = np.uint64(bits)
    hi = a.hi << s
    hi |= a.lo >> np.uint64(64 - bits)
    return _z(_nd(a.lo << s), _nd(hi))


def shr(a: Z128, bits: int) -> Z128:
    """Logical right shift: ``floor(a / 2^bits)`` for ``0 <= bits < 128``."""
    bits = _check_shift(bits)
    if bits == 0:
        return a.copy()
    if bits >= 64:
        return _z(_nd(a.hi >> np.uint64(bits - 64)), np.zeros(a.shape, dtype=_U64))
    s = np.uint64(bits)
    lo = a.lo >> s
    lo |= a.hi << np.uint64(64 - bits)
    return _z(_nd(lo), _nd(a.hi >> s))


def _nd(x: np.ndarray) -> np.ndarray:
    """``x`` as an array (numpy returns scalars for 0-d operands)."""
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def _check_shift(bits: int) -> int:
    return check_int(bits, "shift", lo=0, hi=127, numpy=True, message="shift must be an integer in [0, 128)")


def equal(a: Z128, b: Z128) -> np.ndarray:
    """Elementwise ``a == b`` (a bool array)."""
    return (a.lo == b.lo) & (a.hi == b.hi)


def less(a: Z128, b: Z128) -> np.ndarray:
    """Elementwise ``a < b`` as unsigned integers in [0, 2^128) (a bool array)."""
    return (a.hi < b.hi) | ((a.hi == b.hi) & (a.lo < b.lo))


def sum(a: Z128, axis: int | tuple[int, ...] | None = None) -> Z128:  # noqa: A001 (numpy name)
    """Sum modulo 2^128 over ``axis`` (all elements if ``None``), numpy semantics.

    Raises:
        ConfigError: more than 2^32 elements are summed into one (split the sum).
    """
    if isinstance(axis, int):
        count = a.shape[axis]
    elif isinstance(axis, tuple):
        count = math.prod(a.shape[i] for i in axis)
    else:
        count = a.size if axis is None else int(np.prod([a.shape[i] for i in np.atleast_1d(axis)]))
    if count >= _MAX_SUM_COUNT:
        raise ConfigError("sum of 2^32 or more elements; split it")
    reduce = np.add.reduce
    lo0 = _nd(reduce(a.lo & _MASK32, axis=axis, dtype=_U64))
    lo1 = _nd(reduce(a.lo >> _S32, axis=axis, dtype=_U64))
    hi = _nd(reduce(a.hi, axis=axis, dtype=_U64))
    # total = lo0 + 2^32 * lo1 + 2^64 * hi, with lo0 and lo1 below 2^64.
    return blocked(_join_halves, _z(lo0, hi), _z(lo1, lo1))


def _join_halves(a: Z128, b: Z128) -> Z128:
    """``a + 2^32 b.lo`` (``b.hi`` unused): the halves of a sum put back together."""
    low = b.lo << _S32
    lo = a.lo + low
    hi = b.lo >> _S32
    hi += a.hi
    hi += (lo < low).view(np.uint8)
    return _z(lo, hi)


def dot_u64(a: Z128, c: np.ndarray) -> Z128:
    """``sum_j a_j * c_j mod 2^128`` for 1-d ``a`` and 64-bit coefficients ``c`` (a 0-d result).

    Computed block by block (see :func:`blocked`) without materializing the products.

    Raises:
        ConfigError: shapes differ, ``a`` is not 1-d or ``c`` not uint64.
    """
    c = np.asarray(c)
    if c.dtype != _U64 or a.ndim != 1 or c.shape != a.shape:
        raise ConfigError("dot_u64 needs a 1-d Z128 and uint64 coefficients of the same length")
    if a.size <= _SMALL_DOT:
        return _dot_small(a, c)
    if a.size <= _BLOCK:
        return sum(_mul_u64(a, _z(c, c)))
    # Lines the kernels take (_kernel_rows' rule: large, aligned, contiguous), passed as they are.
    kernels = None if _kernel_rows([a.lo, a.hi, c], a.shape) is None else _kernels()
    if kernels is not None:
        lo, hi = kernels.dot_u64(a.lo, a.hi, c)
        return _z(np.asarray(np.uint64(lo)), np.asarray(np.uint64(hi)))
    total = zeros(1)
    # A loop over blocks, not elements.
    for start in range(0, a.size, _BLOCK):
        part = _mul_u64(a[start : start + _BLOCK], _z(c[start : start + _BLOCK], c[start : start + _BLOCK]))
        total = _add(total, sum(part).reshape(1))
    return total.reshape(())


def dot_u64_parts(parts: Sequence[Z128], c: np.ndarray) -> Z128:
    """:func:`dot_u64` of the concatenated flat elements of ``parts`` with ``c`` (a 0-d result).

    Consecutive small parts are joined into runs of up to 2^15 elements first, so that a long
    list of small arrays (e.g. every opening of a training job before its MAC check) costs a
    few vectorized steps per run instead of per array; large parts are not copied.

    Raises:
        ConfigError: ``c`` is not a 1-d uint64 array as long as the parts together.
    """
    c = np.asarray(c)
    if c.dtype != _U64 or c.ndim != 1 or c.size != builtins.sum(p.size for p in parts):
        raise ConfigError("dot_u64_parts needs uint64 coefficients, one per element of the parts")
    total = zeros(())
    run: list[Z128] = []
    run_size = pos = 0
    # A loop over the parts, not their elements; None flushes the last run.
    for part in [*parts, None]:
        flat = None if part is None else part.reshape(-1)
        if run and (flat is None or run_size + flat.size > _BLOCK):
            joined = run[0] if len(run) == 1 else concatenate(run)
            total = add(total, dot_u64(joined, c[pos : pos + run_size]))
            pos += run_size
            run, run_size = [], 0
        if flat is not None:
            run.append(flat)
            run_size += flat.size
    return total


def _dot_small(a: Z128, c: np.ndarray) -> Z128:
    """:func:`dot_u64` of a few elements (at most 2^16) in a few vectorized steps.

    ``a.lo`` is cut into 32-bit halves and ``c`` into 16-bit limbs: each of the 8 limb dot
    products sums products below 2^48, so it is exact in uint64 (below 2^64 for 2^16 terms);
    the high limb only matters modulo 2^64 (it is weighted by 2^64).
    """
    halves = (a.lo >> _SHIFTS32) & _MASK32  # (2, n)
    limbs = (c >> _SHIFTS16[:, None]) & _MASK16  # (4, n)
    parts = np.add.reduce(halves[:, None, :] * limbs, axis=2).tolist()  # [p][q]: weight 2^(32 p + 16 q)
    high = int(np.add.reduce(a.hi * c, dtype=_U64))  # wraps modulo 2^64, as wanted
    total = high << 64
    # A loop over the 8 limb products, not elements.
    for p, row in enumerate(parts):
        for q, v in enumerate(row):
            total += v << (32 * p + 16 * q)
    total &= MODULUS - 1
    return _z(np.asarray(np.uint64(total & _MASK64)), np.asarray(np.uint64(total >> 64)))


def _limbs16(x: Z128) -> list[np.ndarray]:
    """The eight 16-bit limbs of ``x``, least significant first, as float64 arrays."""
    out = []
    for word in (x.lo, x.hi):
        for j in range(4):
            out.append(((word >> np.uint64(16 * j)) & _MASK16).astype(np.float64))
    return out


def matmul(a: Z128, b: Z128) -> Z128:
    """``a @ b mod 2^128`` with numpy ``matmul`` semantics (1-d operands, batch dimensions).

    Small products (at most 2^14 scalar products) are elementwise 128-bit products summed over
    the inner axis. Otherwise both operands are split into eight 16-bit limbs; the limb products
    of total weight below 2^128 (36 of the 64 pairs) are float64 matrix products, exact
    because every entry is a sum of at most 2^21 products below 2^32. Limbs that are zero
    everywhere (e.g. the high limb of a public 64-bit matrix) are skipped.

    Raises:
        ConfigError: the inner dimension exceeds 2^21 or the shapes do not match.
    """
    if a.ndim == 0 or b.ndim == 0:
        raise ConfigError("matmul needs operands of at least one dimension")
    inner = a.shape[-1]
    if inner > MAX_MATMUL_INNER:
        raise ConfigError("matmul inner dimension above 2^21")
    out_shape = _matmul_shape(a.shape, b.shape)
    if math.prod(out_shape) * inner <= _SMALL_MATMUL:
        return _matmul_small(a, b, out_shape)
    la, lb = _limbs16(a), _limbs16(b)
    nz_a = [bool(limb.any()) for limb in la]
    nz_b = [bool(limb.any()) for limb in lb]
    # T_t = sum_{p+q=t} A_p @ B_q, each below 8 * 2^53 = 2^56: exact in uint64 after rounding.
    weights: list[np.ndarray | None] = [None] * 8
    for p in range(8):
        if not nz_a[p]:
            continue
        for q in range(8 - p):
            if not nz_b[q]:
                continue
            term = np.matmul(la[p], lb[q]).astype(np.uint64)
            t = p + q
            weights[t] = term if weights[t] is None else weights[t] + term
    total = zeros(out_shape)
    for t, w in enumerate(weights):
        if w is not None:
            total = add(total, shl(from_u64(np.asarray(w)), 16 * t))
    return total


def _matmul_small(a: Z128, b: Z128, out_shape: tuple[int, ...]) -> Z128:
    """``a @ b`` as elementwise products summed over the inner axis (few elements: no BLAS).

    ``out_shape`` (from :func:`_matmul_shape`) already vouches for the shapes.
    """
    a2 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a
    b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
    # (..., m, k, 1) * (..., 1, k, n), summed over k
    x = _z(a2.lo[..., None], a2.hi[..., None])
    y = _z(b2.lo[..., None, :, :], b2.hi[..., None, :, :])
    return sum(_mul(x, y), axis=-2).reshape(out_shape)


def _matmul_shape(sa: tuple[int, ...], sb: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of ``a @ b`` under numpy's ``matmul`` rules, without computing it."""
    a2 = (1, *sa) if len(sa) == 1 else sa
    b2 = (*sb, 1) if len(sb) == 1 else sb
    if a2[-1] != b2[-2]:
        raise ConfigError(f"matmul shapes {sa} and {sb} do not match")
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        raise ConfigError(f"matmul batch shapes {sa} and {sb} do not broadcast") from None
    out = (*batch, a2[-2], b2[-1])
    if len(sb) == 1:
        out = out[:-1]
    if len(sa) == 1:
        out = out[:-2] + out[-1:] if len(sb) > 1 else out[:-1]
    return tuple(out)


def concatenate(parts: Sequence[Z128], axis: int = 0) -> Z128:
    """Join arrays along an existing axis (numpy semantics)."""
    if not parts:
        raise ConfigError("concatenate of no arrays")
    return _z(
        np.concatenate([p.lo for p in parts], axis=axis),
        np.concatenate([p.hi for p in parts], axis=axis),
    )


def stack(parts: Sequence[Z128], axis: int = 0) -> Z128:
    """Join arrays along a new axis (numpy semantics)."""
    if not parts:
        raise ConfigError("stack of no arrays")
    return _z(np.stack([p.lo for p in parts], axis=axis), np.stack([p.hi for p in parts], axis=axis))


def take_along_axis(a: Z128, indices: np.ndarray, axis: int) -> Z128:
    """Gather elements along ``axis`` (numpy ``take_along_axis`` on both limbs)."""
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise ConfigError("take_along_axis needs integer indices")
    return _z(np.take_along_axis(a.lo, idx, axis=axis), np.take_along_axis(a.hi, idx, axis=axis))
