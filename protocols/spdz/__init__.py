"""SPDZ2k: actively secure secret-shared arithmetic over Z_2^64 (dishonest majority, abort).

STATUS (keep honest; the next helper continues from here):

- done (tested for 2, 3 and 5 parties against numpy): Z_2^128 arithmetic (``mpc.ring128``);
  authenticated shares with local linear operations (:mod:`.shares`); the preprocessing
  interface with counts and reservations (:mod:`.preprocessing`) and the
  :class:`InsecureDealer` (:mod:`.dealer`); input with a consistency-checked broadcast, Beaver
  multiplication and matrix multiplication by one bilinear routine, truncation by preprocessed
  pairs, reveal to all or to named parties, the batched commit-then-open MAC check
  (:mod:`.online`, :mod:`.maccheck`); the lazy, level-batched programming model
  (:mod:`.engine`, :mod:`.array`); fixed point (``mpc.fixedpoint``): multiplication with
  truncation, division by public constants, sum and mean.
- not done: comparisons (LTZ, EQ, sign, ReLU, max/argmax by bit decomposition; the ``bits``
  resource exists for them), sigmoid/exp, batched (3-d and more) secret @ secret, a passive
  mode, edaBits/daBits in the interface (they need a binary domain; comparisons in the
  arithmetic domain need only ``bits``), the statistics job on the nodes.

Usage (every party runs the same program)::

    from protocols import spdz

    async def program(s: Session, my_rows: np.ndarray) -> np.ndarray | None:
        dealer = await spdz.insecure_dealer(s, allow_insecure=True)   # tests only
        spdz.setup(s, dealer)
        x = await spdz.input(s, my_rows, owner="hospital-a")          # fixed point (floats)
        w = await spdz.input(s, my_rows, owner="hospital-b")
        y = (x * w).sum(axis=1) / 3 + 1.5                              # recorded, not yet run
        return await spdz.reveal(s, y, to="hospital-a")                # flush, MAC check, output

Security, rounds and bytes: see :mod:`.engine` (the summary table) and :mod:`.maccheck`.
Paper: Cramer, Damgard, Escudero, Scholl, Xing, "SPDZ2k: Efficient MPC mod 2^k for Dishonest
Majority", CRYPTO 2018 (k = 64, s = 64).
"""

from __future__ import annotations

from typing import Any, Sequence

from mpc import fixedpoint
from mpc.errors import ConfigError
from mpc.session import Session
from protocols.spdz.array import SecretArray, concatenate, stack, where
from protocols.spdz.dealer import InsecureDealer, insecure_dealer
from protocols.spdz.engine import Engine
from protocols.spdz.preprocessing import InputMask, Requirements, SpdzPreprocessing, Triple, TruncationPair
from protocols.spdz.shares import AuthShare

__all__ = [
    "AuthShare",
    "Engine",
    "InputMask",
    "InsecureDealer",
    "Requirements",
    "SecretArray",
    "SpdzPreprocessing",
    "Triple",
    "TruncationPair",
    "check",
    "concatenate",
    "constant",
    "engine_of",
    "flush",
    "input",
    "input_all",
    "insecure_dealer",
    "reveal",
    "setup",
    "stack",
    "where",
]

_RESOURCE = "spdz"


def setup(
    session: Session,
    preprocessing: SpdzPreprocessing,
    *,
    frac_bits: int = fixedpoint.FRAC_BITS,
    check_every: int = 1 << 22,
) -> Engine:
    """Create this party's engine for ``session`` and attach it (``session.resources["spdz"]``).

    Raises:
        ConfigError: an engine is already attached, or invalid parameters.
    """
    if _RESOURCE in session.resources:
        raise ConfigError("an SPDZ engine is already set up for this session")
    engine = Engine(session, preprocessing, frac_bits=frac_bits, check_every=check_every)
    session.resources[_RESOURCE] = engine
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
