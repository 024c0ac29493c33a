"""Joint statistics of a column held in parts by every party: count, sum, mean, variance, min, max.

Every party holds some rows of one numeric column (any number, zero included). The parties
learn nothing; the receivers learn exactly the statistics of the union of the rows. Recipe:

1. *Locally*, each party reduces its rows to five numbers: its count ``n_i``, ``S1_i = sum x``,
   ``S2_i = sum x^2``, ``max_i`` and ``-min_i`` (after subtracting the public ``offset``; an
   empty party uses the sentinel ``-2^41`` (real units) for both extremes), encoded in fixed point with
   ``f = 16`` fractional bits as integers (so the sums below are exact in Z_2^64).
2. *Input*: every party secret-shares its five numbers in one round (:meth:`Engine.input_all`).
3. *Combine*: ``n, S1, S2`` are sums (local); ``max`` and ``-min`` are one maximum over the
   ``n`` parties of the two stacked columns (:func:`~protocols.spdz.ordering.reduce_max`:
   ``ceil(lg n)`` levels of an exact comparison and a selection, 7 rounds each).
4. *Reveal* ``(n, S1, S2, max, -min)`` to the receivers only, MAC-checked. Each receiver
   computes, in exact integer arithmetic, ``mean = S1 / n``,
   ``variance = (n S2 - S1^2) / n^2`` (population) and ``n / (n - 1)`` times it (sample).

What leaks: nothing to the non-receivers (they get ``None``); the receivers learn the count,
sum, mean, variances, min and max of all rows and nothing else: ``S2`` is a function of the
count, mean and variance. Each party's row count is secret-shared like its values (the inputs
have the same five-element shape whatever the count), so it does not leak; neither does which
party holds the minimum or maximum.

Security: the engine's (active, dishonest majority, abort; :mod:`protocols.spdz.engine`), on
whatever :class:`~protocols.spdz.preprocessing.SpdzPreprocessing` the session's engine uses.

Ranges (checked locally, a :class:`~mpc.errors.ConfigError` before any message): finite
values with ``|x - offset| < 2^40`` (about 1.1e12), and per party
``sum (x - offset)^2 < 2^46 / n_parties`` and count below ``2^30``, so every sum fits. Use
``offset`` (a public shift, e.g. a plausible mean) for data far from zero: it also improves
the precision of the variance. Error: each party's ``S1_i`` and ``S2_i`` are rounded to
``2^-17``; min, max and count are exact up to the encoding of the values (``2^-17``).

Cost (``n`` parties, ``R`` receivers, or all): rounds ``1 + 7 ceil(lg n) + 5``; preprocessing
in :func:`statistics_requirements`; bytes dominated by ``2 (n - 1)`` comparisons (each about
``2.9 kB`` per peer).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from mpc import fixedpoint
from mpc.errors import ConfigError
from mpc.session import Session
from protocols.spdz import compare as cmp
from protocols.spdz.array import stack
from protocols.spdz.engine import Engine
from protocols.spdz.preprocessing import Requirements, SpdzPreprocessing, reveal_cost

__all__ = ["joint_statistics", "statistics_requirements", "local_summary", "summarize", "FIELDS", "STAT_FRAC_BITS"]

STAT_FRAC_BITS = 16
"""Fractional bits of the encoded sums and extremes."""

FIELDS = ("count", "sum", "sum_squares", "max", "neg_min")
"""The five numbers each party inputs, in order."""

_VALUE_BITS = 40
_EMPTY = -(1 << (_VALUE_BITS + STAT_FRAC_BITS + 1))  # an empty party's extremes: below every value


def local_summary(column: Any, n_parties: int, offset: float = 0.0) -> np.ndarray:
    """Step 1: this party's five numbers, as fixed-point integers (int64, ``f = 16``).

    Raises:
        ConfigError: a value is not finite or out of range, or the column is not 1-d numeric.
    """
    arr = np.asarray(column)
    if arr.ndim != 1 or arr.dtype.kind not in "biuf":
        raise ConfigError("joint_statistics needs a 1-d numeric column")
    if not np.isfinite(offset):
        raise ConfigError("offset must be finite")
    x = arr.astype(np.float64) - float(offset)
    if not np.all(np.isfinite(x)) or (x.size and float(np.max(np.abs(x))) >= 2.0**_VALUE_BITS):
        raise ConfigError(f"column values must be finite with |x - offset| < 2^{_VALUE_BITS}")
    if x.size >= 1 << 30:
        raise ConfigError("a party may hold at most 2^30 - 1 rows")
    s2 = float(np.dot(x, x))
    if s2 >= 2.0**fixedpoint.MAX_ENCODED_BITS / 2.0**STAT_FRAC_BITS / n_parties:
        raise ConfigError(f"sum of squares too large: sum (x - offset)^2 must stay below 2^46 / {n_parties}")
    scale = float(1 << STAT_FRAC_BITS)
    if x.size:
        extremes = [float(np.max(x)), -float(np.min(x))]
        enc = [round(v * scale) for v in extremes]
    else:
        enc = [_EMPTY, _EMPTY]
    return np.array([x.size << STAT_FRAC_BITS, round(float(np.sum(x)) * scale), round(s2 * scale), *enc], dtype=np.int64)


def summarize(totals: Sequence[int], offset: float = 0.0) -> dict[str, Any]:
    """Step 4 at a receiver: the statistics from the revealed ``(n, S1, S2, max, -min)``.

    Exact rational arithmetic on the fixed-point integers, one rounding to float at the end.
    Undefined statistics (no rows; the sample variance of one row) are ``None``.
    """
    scale = 1 << STAT_FRAC_BITS
    n_enc, s1, s2, mx, neg_mn = (int(v) for v in totals)
    count = n_enc // scale
    out: dict[str, Any] = {"count": count, "sum": float(Fraction(s1, scale) + count * Fraction(offset))}
    if count == 0:
        out.update(mean=None, variance=None, sample_variance=None, min=None, max=None)
        return out
    mean = Fraction(s1, scale * count)
    # n S2 - S1^2 with S1, S2 scaled by 2^f: (n S2' 2^f - S1'^2) / 2^(2f)
    spread = Fraction(count * s2 * scale - s1 * s1, scale * scale)
    var = max(spread / (count * count), Fraction(0))
    out["mean"] = float(mean + Fraction(offset))
    out["variance"] = float(var)
    out["sample_variance"] = float(var * count / (count - 1)) if count > 1 else None
    out["min"] = float(Fraction(-neg_mn, scale) + Fraction(offset))
    out["max"] = float(Fraction(mx, scale) + Fraction(offset))
    return out


def statistics_requirements(
    n_parties: int, receivers: Sequence[int] | None = None, preprocessing: SpdzPreprocessing | None = None
) -> Requirements:
    """The preprocessing one :func:`joint_statistics` consumes (exactly).

    Args:
        n_parties: the number of parties.
        receivers: receiver ids (``None`` or every party: revealed to all).
        preprocessing: the provider that will serve it (whether it has comparison masks
            changes the comparisons' needs, see :func:`protocols.spdz.compare.cost`).
    """
    if n_parties < 1:
        raise ConfigError("n_parties must be positive")
    comparisons = 2 * (n_parties - 1)  # the maximum of two columns over n parties
    need = cmp.cost(cmp.Want(lt=True), comparisons, preprocessing)
    need = need + Requirements(triples=comparisons, input_masks={p: len(FIELDS) for p in range(n_parties)})
    return need + reveal_cost(len(FIELDS), receivers, n_parties)


async def joint_statistics(
    session: Session,
    column: np.ndarray,
    receivers: Sequence[int | str],
    *,
    preprocessing: SpdzPreprocessing | None = None,
    offset: float = 0.0,
) -> dict[str, Any] | None:
    """Count, sum, mean, variances, min and max of all parties' rows, revealed to ``receivers``.

    Every party calls it with its own rows (see the module docstring).

    Args:
        session: this party's session. Its SPDZ engine is used (:func:`protocols.spdz.setup`),
            or one is set up on ``preprocessing``.
        column: this party's values (1-d, numeric; may be empty).
        receivers: ids or names of the parties that learn the result.
        preprocessing: a provider to set the session's engine up with (``ConfigError`` if the
            session already has one). Its :meth:`~SpdzPreprocessing.reserve` is called with
            :func:`statistics_requirements` first.
        offset: a public value subtracted from every value before the computation (see the
            ranges); the results are for the original values.

    Returns:
        At a receiver: ``{"count": int, "sum": float, "mean": float, "variance": float
        (population), "sample_variance": float, "min": float, "max": float}`` (``None`` for
        undefined entries: no rows; one row's sample variance). ``None`` elsewhere.

    Raises:
        ConfigError: bad values or parameters (locally, before any message), no receivers.
        MacCheckFailure, ProtocolViolation, PeerUnavailable: as the engine's protocols.
        PreprocessingExhausted: the provider cannot supply the job (before any message when
            ``preprocessing`` is given).
    """
    from protocols import spdz

    ids = sorted({session.party_index(r) for r in receivers}) if receivers else []
    if not ids:
        raise ConfigError("joint_statistics needs at least one receiver")
    mine = local_summary(column, session.n_parties, offset)
    if preprocessing is not None:
        preprocessing.reserve(statistics_requirements(session.n_parties, ids, preprocessing))
        engine = spdz.setup(session, preprocessing)
    else:
        engine = spdz.engine_of(session)
    if not isinstance(engine, Engine):
        raise ConfigError("no SPDZ engine")
    parts = await engine.input_all(mine, frac_bits=0)
    table = stack(parts)  # (n_parties, 5), integers
    totals = table[:, :3].sum(axis=0)
    extremes = table[:, 3:].max(axis=0) if session.n_parties > 1 else table[0, 3:]
    revealed = await engine.reveal([totals, extremes], to=ids)
    if revealed is None:
        return None
    return summarize([*revealed[0].tolist(), *revealed[1].tolist()], offset)
