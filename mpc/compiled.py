"""Optional compiled kernels (modules of numba loops, imported on first use), and the cores a
process may compute on.

:mod:`mpc.kernels`, :mod:`protocols.ot.kernels` and :mod:`protocols.spdz_offline.kernels`
compile their loops with numba when imported. Their callers keep a numpy path that computes the
same values; :func:`optional_kernels` imports a kernel module, or says why it cannot and lets
numpy serve (a machine without numba still computes everything, more slowly).
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = ["optional_kernels", "available_cores"]


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def optional_kernels(module: str, logger: logging.Logger, fallback: str) -> ModuleType | None:
    """Import the kernel module ``module``, or return ``None`` (with a warning on ``logger``
    that ends with ``fallback``, what numpy then does) if it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        logger.warning("compiled kernels %s unavailable (%s): %s", module, exc, fallback)
        return None
