"""Checks of plain parameters, shared by every layer.

Python's ``bool`` is a subclass of ``int``, so ``isinstance(True, int)`` holds and a stray
``True`` would pass a naive integer check as ``1``. :func:`check_int` is the one place that
says what an integer parameter is: an ``int`` that is not a ``bool`` (and, where a caller
asks for it, a numpy integer), within inclusive bounds.
"""

from __future__ import annotations

import numpy as np

from mpc.errors import ConfigError, MPCError

__all__ = ["check_int"]


def check_int(
    value: object,
    what: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    numpy: bool = False,
    error: type[MPCError] = ConfigError,
    message: str | None = None,
) -> int:
    """Check that ``value`` is an integer in ``[lo, hi]`` and return it as a Python ``int``.

    Args:
        value: the value to check.
        what: its name, for the default message.
        lo: the smallest value allowed (inclusive); no lower bound if ``None``.
        hi: the largest value allowed (inclusive); no upper bound if ``None``.
        numpy: also accept numpy integer scalars (``np.int64(3)``, ...); ``bool`` and
            ``np.bool_`` are refused either way.
        error: the class raised (``ProtocolViolation`` for a value that came from a peer).
        message: the whole error message; by default it is made from ``what`` and the bounds:
            ``"<what> must be an integer"``, ``"... a positive integer"`` (``lo=1``),
            ``"... a non-negative integer"`` (``lo=0``), ``"... an integer >= <lo>"``,
            ``"... an integer <= <hi>"`` or ``"... an integer in [<lo>, <hi>]"``.

    Returns:
        ``int(value)``.

    Raises:
        error: ``value`` is a bool, not an integer of an accepted type, or out of bounds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer) if numpy else int):
        raise error(message or _default_message(what, lo, hi))
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise error(message or _default_message(what, lo, hi))
    return v


def _default_message(what: str, lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"{what} must be an integer in [{lo}, {hi}]"
    if lo is not None:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f"an integer >= {lo}")
        return f"{what} must be {kind}"
    if hi is not None:
        return f"{what} must be an integer <= {hi}"
    return f"{what} must be an integer"
