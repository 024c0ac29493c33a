"""SPDZ2k: actively secure secret-shared arithmetic over Z_2^64 (dishonest majority, abort).

STATUS (keep honest; the next helper continues from here):

- done (tested for 2, 3 and 5 parties against numpy): Z_2^128 arithmetic (``mpc.ring128``);
  authenticated shares with local linear operations (:mod:`.shares`); the preprocessing
  interface with counts and reservations (:mod:`.preprocessing`) and the
  :class:`InsecureDealer` (:mod:`.dealer`); input with a consistency-checked broadcast, Beaver
  multiplication and matrix multiplication by one bilinear routine, truncation by preprocessed
  pairs, reveal to all or to named parties, the batched commit-then-open MAC check with a
  verdict round, so a tampered check message aborts every honest party (:mod:`.online`,
  :mod:`.maccheck`; the last message problem remains, see there); the lazy, level-batched
  programming model (:mod:`.engine`, :mod:`.array`), also through ``mpc.Session.input`` /
  ``Session.reveal`` (``mpc.contracts.SecretEngine``); fixed point (``mpc.fixedpoint``):
  multiplication with truncation, division by public constants, sum and mean.
- done: exact comparisons for any number of parties by bit decomposition with preprocessed
  random bits (:mod:`.compare`: LTZ and EQZ on one mask, 6 rounds, 89 / 63 triples and 64
  bits per element; exact on all of Z_2^64) and on top of them ``< <= > >= == !=``, sign, abs,
  ReLU, maximum/minimum, max/min/argmax/argmin over an axis (:mod:`.ordering`); sigmoid
  (piecewise degree-7, error <= 1e-4, or MPyC's clip), exp (|x| <= 16), reciprocal and
  division by a secret (:mod:`.functions`); joint statistics of a split column
  (:mod:`.stats`).
- done: a passive mode (``setup(..., security="passive")``: openings modulo 2^64, no MAC check;
  the MAC shares are still computed locally, so it halves the traffic, not the CPU).
- not done: batched (3-d and more) secret @ secret; edaBits/daBits (a binary
  domain would make comparisons cheaper: today each costs 89 arithmetic triples); exact
  (deterministic) truncation and integer division by a secret; exp beyond |x| <= 16.

Usage (every party runs the same program)::

    from protocols import spdz

    async def program(s: Session, my_rows: np.ndarray) -> np.ndarray | None:
        dealer = await spdz.insecure_dealer(s, allow_insecure=True)   # tests only
        spdz.setup(s, dealer)
        x = await s.input(my_rows, owner="hospital-a")                # fixed point (floats)
        w = await s.input(my_rows, owner="hospital-b")
        y = (x * w).sum(axis=1) / 3 + 1.5                              # recorded, not yet run
        z = spdz.where(y > 0, y, 0.0)                                  # exact comparison
        return await s.reveal(spdz.sigmoid(z), to="hospital-a")       # flush, MAC check, output

Security, rounds and bytes: see :mod:`.engine` (the summary table) and :mod:`.maccheck`.
Paper: Cramer, Damgard, Escudero, Scholl, Xing, "SPDZ2k: Efficient MPC mod 2^k for Dishonest
Majority", CRYPTO 2018 (k = 64, s = 64).
"""

from __future__ import annotations

from typing import Any, Sequence

from mpc import fixedpoint
from mpc import ring128 as r128
from mpc.contracts import SECRET_ENGINE
from mpc.errors import ConfigError
from mpc.session import Session
from protocols.spdz.array import SecretArray, concatenate, stack, where
from protocols.spdz.dealer import InsecureDealer, insecure_dealer
from protocols.spdz.engine import DEFAULT_RELAY_MIN, Engine
from protocols.spdz.functions import divide, exp, polyval, reciprocal, sigmoid
from protocols.spdz.ordering import (
    absolute,
    argmax,
    argmin,
    equal,
    greater,
    greater_equal,
    less,
    less_equal,
    maximum,
    minimum,
    not_equal,
    reduce_max,
    reduce_min,
    relu,
    sign,
)
from protocols.spdz.preprocessing import (
    ComparisonMask,
    ComparisonMaskProvider,
    InputMask,
    Requirements,
    SpdzPreprocessing,
    Triple,
    TruncationPair,
)
from protocols.spdz.shares import AuthShare
from protocols.spdz.stats import joint_statistics, statistics_requirements

__all__ = [
    "AuthShare",
    "ComparisonMask",
    "ComparisonMaskProvider",
    "DEFAULT_RELAY_MIN",
    "Engine",
    "InputMask",
    "InsecureDealer",
    "Requirements",
    "SecretArray",
    "SpdzPreprocessing",
    "Triple",
    "TruncationPair",
    "absolute",
    "argmax",
    "argmin",
    "check",
    "concatenate",
    "constant",
    "divide",
    "engine_of",
    "equal",
    "exp",
    "flush",
    "greater",
    "greater_equal",
    "input",
    "input_all",
    "insecure_dealer",
    "joint_statistics",
    "less",
    "less_equal",
    "maximum",
    "minimum",
    "not_equal",
    "polyval",
    "reciprocal",
    "reduce_max",
    "reduce_min",
    "relu",
    "reveal",
    "setup",
    "sigmoid",
    "sign",
    "stack",
    "statistics_requirements",
    "where",
]

_RESOURCE = "spdz"


def setup(
    session: Session,
    preprocessing: SpdzPreprocessing,
    *,
    frac_bits: int = fixedpoint.FRAC_BITS,
    check_every: int = 1 << 22,
    security: str = "active",
    relay_min: int = DEFAULT_RELAY_MIN,
) -> Engine:
    """Create this party's engine for ``session`` and attach it.

    The engine is ``session.resources["spdz"]`` and the session's secret engine
    (``resources[mpc.contracts.SECRET_ENGINE]``), so ``await session.input(x, owner=...)`` and
    ``await session.reveal(y, to=...)`` use it.

    ``security="passive"`` is an explicit opt-in to semi-honest security (no MAC checks, half
    the traffic; see :mod:`.engine`); the default is active security. ``relay_min``: opens of
    at least this many elements among three or more parties are relayed (two rounds, a third
    less traffic with three parties; see :meth:`.Engine._sum_shares`).

    The compiled loops of the ring arithmetic are loaded here (:func:`mpc.ring128.load_kernels`:
    about half a second, once per process), before the computation's clock starts.

    Raises:
        ConfigError: an engine is already attached, or invalid parameters.
    """
    if _RESOURCE in session.resources or SECRET_ENGINE in session.resources:
        raise ConfigError("an engine is already set up for this session")
    r128.load_kernels()
    engine = Engine(
        session, preprocessing, frac_bits=frac_bits, check_every=check_every, security=security, relay_min=relay_min
    )
    session.resources[_RESOURCE] = engine
    session.resources[SECRET_ENGINE] = engine  # what Session.input / Session.reveal use
    return engine


def engine_of(session: Session) -> Engine:
    """The engine attached to ``session`` by :func:`setup`.

    Raises:
        ConfigError: none is attached.
    """
    engine = session.resources.get(_RESOURCE)
    if not isinstance(engine, Engine):
        raise ConfigError("no SPDZ engine for this session; call spdz.setup(session, preprocessing)")
    return engine


async def input(  # noqa: A001 (the verb of the protocol)
    session: Session,
    value: Any,
    owner: int | str,
    *,
    shape: tuple[int, ...] | None = None,
    frac_bits: int | None = None,
) -> SecretArray:
    """Secret-share ``owner``'s array; see :meth:`Engine.input`."""
    return await engine_of(session).input(value, owner, shape=shape, frac_bits=frac_bits)


async def input_all(session: Session, value: Any, *, frac_bits: int | None = None) -> list[SecretArray]:
    """Every party shares one array in one round; see :meth:`Engine.input_all`."""
    return await engine_of(session).input_all(value, frac_bits=frac_bits)


def constant(session: Session, value: Any, frac_bits: int | None = None) -> SecretArray:
    """A public array as a shared one; see :meth:`Engine.constant`."""
    return engine_of(session).constant(value, frac_bits)


async def reveal(session: Session, x: SecretArray | Sequence[SecretArray], to: Any = None) -> Any:
    """MAC-checked output to everyone or to ``to``; see :meth:`Engine.reveal`."""
    return await engine_of(session).reveal(x, to)


async def flush(session: Session) -> None:
    """Run every recorded operation now (batched by level); see :meth:`Engine.flush`."""
    await engine_of(session).flush()


async def check(session: Session) -> None:
    """MAC-check everything opened so far; see :meth:`Engine.check`."""
    await engine_of(session).check()
