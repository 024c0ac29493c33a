"""The preprocessing interface of the SPDZ2k engine: one method per correlated resource.

A provider hands each party its authenticated shares (:class:`~protocols.spdz.shares.AuthShare`)
of correlated randomness made before (or concurrently with) the online phase. Providers:
:class:`~protocols.spdz.dealer.InsecureDealer` (tests and online benchmarks only) and the
dealer-free OT-based provider (a separate module) implement :class:`SpdzPreprocessing`.

Resources (every value uniform unless said otherwise; "element" = one entry of an array):

==================  =======================================================================
``mac_key_share``   ``alpha_i`` (uint64): this party's share of the MAC key of every share.
``triples``         ``[a], [b], [c]`` with ``c = a * b`` elementwise, ``a, b`` uniform in
                    Z_2^128 (their high bits mask the opened ``x - a``).
``matrix_triple``   ``[A] (m, k), [B] (k, n), [C] = [A @ B]``, uniform in Z_2^128.
``input_masks``     ``[r]`` for inputs of party ``owner``, ``r`` uniform in Z_2^128; the owner
                    also gets ``r mod 2^64`` (its mask ``value``).
``random_values``   ``[r]`` with ``r`` uniform in Z_2^128 (masks the high bits of outputs).
``bits``            ``[b]`` with ``b`` uniform in {0, 1}.
``truncation_pairs``  for ``f`` fractional bits: ``[r]`` uniform in Z_2^128 and, with
                    ``r' = r mod 2^63``, ``[r' >> f]`` and ``[r_63]`` (bit 63 of ``r``).
``comparison_masks``  (optional, :class:`ComparisonMaskProvider`) per element: 64 bits
                    ``[r_i]``, the 32 products ``[r_2j r_2j+1]`` and ``[r] = [sum 2^i r_i +
                    2^64 t]`` (``t`` uniform): the data-independent first step of a
                    comparison (:mod:`protocols.spdz.compare`).
==================  =======================================================================

A provider that does not offer ``comparison_masks`` still serves comparisons: the engine then
makes them from ``bits``, ``random_values`` and 32 more ``triples`` per element.

Counts: a job says what it will consume with a :class:`Requirements`, and
:meth:`SpdzPreprocessing.reserve` either sets that much aside (a provider may produce it ahead
of need) or raises :class:`~mpc.errors.PreprocessingExhausted` before anything runs. A provider
raises ``PreprocessingExhausted`` whenever a request exceeds what it can supply: never a wrong
or reused value. Counts are per element, keyed as in :meth:`Requirements.counts`.

Every party must request the same resources with the same shapes in the same order (the
engine's programs are SPMD): the material of all parties is correlated by position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol, runtime_checkable

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError
from protocols.spdz.shares import AuthShare

__all__ = [
    "Triple",
    "InputMask",
    "TruncationPair",
    "ComparisonMask",
    "Requirements",
    "SpdzPreprocessing",
    "ComparisonMaskProvider",
    "shape_size",
    "reveal_cost",
]


def shape_size(shape: tuple[int, ...]) -> int:
    """Number of elements of ``shape``.

    Raises:
        ConfigError: a negative dimension.
    """
    size = 1
    for d in shape:  # a loop over the dimensions
        if int(d) < 0:
            raise ConfigError(f"invalid shape {shape}")
        size *= int(d)
    return size


@dataclass(frozen=True, eq=False)
class Triple:
    """A multiplication triple ``[a], [b], [c]`` with ``c = op(a, b)`` (elementwise or matrix)."""

    a: AuthShare
    b: AuthShare
    c: AuthShare


@dataclass(frozen=True, eq=False)
class InputMask:
    """A mask ``[r]`` for inputs of one party.

    Attributes:
        mask: this party's share of ``[r]``.
        value: ``r mod 2^64`` (uint64, the mask's shape) at the owner; ``None`` elsewhere.
    """

    mask: AuthShare
    value: np.ndarray | None


@dataclass(frozen=True, eq=False)
class TruncationPair:
    """Material for truncating by ``frac_bits``: ``[r]``, ``[(r mod 2^63) >> f]``, ``[r_63]``."""

    r: AuthShare
    r_high: AuthShare
    r_msb: AuthShare
    frac_bits: int


@dataclass(frozen=True, eq=False)
class ComparisonMask:
    """Comparison masks for ``m`` elements (bit-major, like an edaBit with pair products).

    Attributes:
        value: ``[r] = [sum_i 2^i r_i + 2^64 t]`` with ``t`` uniform in Z_2^64, shape ``(m,)``
            (a local linear combination of the bits and a random value: the high half masks
            the high bits of the opening ``x + r``).
        bits: ``[r_i]``, uniform bits, shape ``(64, m)`` (row ``i`` = bit ``i`` of every mask).
        pair_products: ``[r_2j r_2j+1]``, shape ``(32, m)``.
    """

    value: AuthShare
    bits: AuthShare
    pair_products: AuthShare


def _count(value: int, what: str) -> int:
    return check_int(value, what, lo=0, numpy=True)


@dataclass(frozen=True)
class Requirements:
    """What a job will consume, in elements (matrix triples: in triples of each shape).

    Attributes:
        triples: elementwise multiplication triples.
        matrix_triples: ``(m, k, n)`` -> number of ``(m, k) x (k, n)`` matrix triples.
        input_masks: owner party id -> input mask elements.
        random_values: uniform authenticated values.
        bits: authenticated random bits.
        truncation_pairs: fractional bits ``f`` -> truncation pairs.
        comparison_masks: comparison masks (elements), for a :class:`ComparisonMaskProvider`.
    """

    triples: int = 0
    matrix_triples: Mapping[tuple[int, int, int], int] = field(default_factory=dict)
    input_masks: Mapping[int, int] = field(default_factory=dict)
    random_values: int = 0
    bits: int = 0
    truncation_pairs: Mapping[int, int] = field(default_factory=dict)
    comparison_masks: int = 0

    def counts(self) -> dict[str, int]:
        """The flat resource keys used by providers (``remaining``), zero counts omitted.

        Keys: ``triples``, ``matrix_triples/MxKxN``, ``input_masks/OWNER``, ``random_values``,
        ``bits``, ``truncation_pairs/F``, ``comparison_masks``.

        Raises:
            ConfigError: a negative or non-integer count or key.
        """
        out = {
            "triples": _count(self.triples, "triples"),
            "random_values": _count(self.random_values, "random_values"),
            "bits": _count(self.bits, "bits"),
            "comparison_masks": _count(self.comparison_masks, "comparison_masks"),
        }
        for (m, k, n), c in self.matrix_triples.items():
            out[f"matrix_triples/{_count(m, 'm')}x{_count(k, 'k')}x{_count(n, 'n')}"] = _count(c, "count")
        for owner, c in self.input_masks.items():
            out[f"input_masks/{_count(owner, 'owner')}"] = _count(c, "input masks")
        for f, c in self.truncation_pairs.items():
            out[f"truncation_pairs/{_count(f, 'frac_bits')}"] = _count(c, "truncation pairs")
        return {k: v for k, v in out.items() if v}

    def __add__(self, other: Requirements) -> Requirements:
        def merge(a: Mapping, b: Mapping) -> dict:  # type: ignore[type-arg]
            out = dict(a)
            for k, v in b.items():
                out[k] = out.get(k, 0) + v
            return out

        return Requirements(
            triples=self.triples + other.triples,
            matrix_triples=merge(self.matrix_triples, other.matrix_triples),
            input_masks=merge(self.input_masks, other.input_masks),
            random_values=self.random_values + other.random_values,
            bits=self.bits + other.bits,
            truncation_pairs=merge(self.truncation_pairs, other.truncation_pairs),
            comparison_masks=self.comparison_masks + other.comparison_masks,
        )


def reveal_cost(count: int, receivers: Iterable[int] | None, n_parties: int) -> Requirements:
    """What the engine consumes to reveal ``count`` elements (its rule in ``Engine.reveal``).

    To every party (``receivers`` is ``None`` or names them all): one random value per element;
    to some: one input mask of each receiver per element; to none (nothing revealed): nothing.
    """
    ids = set(range(n_parties)) if receivers is None else set(receivers)
    if not ids:
        return Requirements()
    if len(ids) == n_parties:
        return Requirements(random_values=count)
    return Requirements(input_masks={j: count for j in sorted(ids)})


@runtime_checkable
class SpdzPreprocessing(Protocol):
    """A source of SPDZ2k correlated randomness for one party (see the module docstring).

    Every method raises :class:`~mpc.errors.PreprocessingExhausted` rather than return
    material it cannot supply. Shapes are numpy shapes; a scalar is ``()``.
    """

    @property
    def party_id(self) -> int:
        """The party this material belongs to."""
        ...

    @property
    def n_parties(self) -> int:
        """Number of parties sharing the material."""
        ...

    def mac_key_share(self) -> np.ndarray:
        """``alpha_i``: this party's MAC key share (uint64, 0-d), the same for the whole job."""
        ...

    def reserve(self, need: Requirements) -> None:
        """Set aside ``need`` for this job, or raise ``PreprocessingExhausted`` up front."""
        ...

    def remaining(self) -> dict[str, int]:
        """Elements of each resource still available (``Requirements.counts`` keys).

        A provider without a limit on a kind omits it.
        """
        ...

    def triples(self, shape: tuple[int, ...]) -> Triple:
        """Elementwise triples of ``shape``."""
        ...

    def matrix_triple(self, m: int, k: int, n: int) -> Triple:
        """One matrix triple ``A (m, k)``, ``B (k, n)``, ``C = A @ B (m, n)``."""
        ...

    def input_masks(self, owner: int, shape: tuple[int, ...]) -> InputMask:
        """Masks of ``shape`` for inputs of party ``owner`` (who also gets their values)."""
        ...

    def random_values(self, shape: tuple[int, ...]) -> AuthShare:
        """Uniform authenticated values of ``shape``."""
        ...

    def bits(self, shape: tuple[int, ...]) -> AuthShare:
        """Uniform authenticated bits of ``shape``."""
        ...

    def truncation_pairs(self, shape: tuple[int, ...], frac_bits: int) -> TruncationPair:
        """Truncation material of ``shape`` for ``frac_bits``."""
        ...


@runtime_checkable
class ComparisonMaskProvider(Protocol):
    """An optional extension of :class:`SpdzPreprocessing`: ready-made comparison masks.

    The engine uses it when the provider has the method (else bits and triples, see the module
    docstring). A dealer-free provider makes them from 64 bits, one random value and 32 triples
    per element (``[r_2j r_2j+1]`` by a Beaver multiplication of its own bits, MAC-checked like
    every other opening of its production; ``[r]`` by the local combination
    ``sum_i 2^i [r_i] + 2^64 [t]``). Arrays should be C-contiguous (rows of ``m`` elements).
    """

    def comparison_masks(self, count: int) -> ComparisonMask:
        """Masks for ``count`` comparisons (key ``comparison_masks`` in :meth:`SpdzPreprocessing.remaining`)."""
        ...

    @property
    def offers_comparison_masks(self) -> bool:
        """Whether the engine should use :meth:`comparison_masks` (optional attribute; a
        provider without it that has the method offers them). It must be the same at every
        party of a job."""
        ...
