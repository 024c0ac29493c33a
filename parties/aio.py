"""The event loop of long-running party processes (nodes and harness workers).

Party processes run on uvloop (libuv's event loop with its own TLS transport, written in
Cython) where it is installed: a secure computation's rounds are many small messages, and the
per-message work of the standard loop's selector and TLS layer is a large part of a party's CPU
in them (uvloop cut a three-party training epoch's CPU by ~15% here). Library code never depends
on the loop: it only uses the asyncio API, so the standard loop (e.g. on Windows, where uvloop
does not exist) runs everything the same way.

Before the loop starts, :func:`run` prepares the process (:func:`prepare_process`). One BLAS
thread (:func:`single_threaded_blas`): several parties share a machine's cores and OpenBLAS's
own thread pool fights them (a 100x100 matrix product measured 2-10 s instead of 15 ms; its
idle threads spin after every product, e.g. in the offline phase's linear combinations). And
glibc's allocator is tuned (:func:`tune_allocator`): a
party's rounds allocate and free arrays of tens of megabytes (Beaver masks, messages, sums), and
glibc serves each of those with a fresh ``mmap``, so every round pays to fault in and zero its
pages again (a 64 MB array: ~800 page faults and ~3.5 ms, as long as filling it). Kept in the
heap instead, freed blocks are reused at once: a three-party 10^6-element multiplication took
~10% less CPU per party.

Where a party's large local computations run (:attr:`mpc.session.Session.offload`) depends on
its cores (:func:`offload_default`): a worker thread lets the loop move bytes meanwhile, which
pays with a core to spare; with one core per party (several parties on one machine) the
threads only contend, and the dealer-free triple producer made 8-26% more triples per second
computing on the loop (2 parties on 2 cores, alternating runs).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import platform
from typing import Any, Coroutine, TypeVar

from mpc.compiled import available_cores

__all__ = ["run", "prepare_process", "single_threaded_blas", "tune_allocator", "offload_default"]

T = TypeVar("T")

_log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters

ALLOCATOR_SETTINGS = {
    _M_MMAP_THRESHOLD: 1 << 30,  # blocks under 1 GiB come from the heap, not a fresh mmap each
    _M_TRIM_THRESHOLD: 1 << 30,  # up to 1 GiB of free heap is kept for reuse, not given back
    _M_TOP_PAD: 256 << 20,  # the heap grows in steps of 256 MiB
}
"""The allocator settings of party processes. The cost: a process keeps up to ~1 GiB of freed
memory (beyond what it uses) until it exits, instead of returning it after every round."""


def offload_default(parties_here: int = 1) -> bool:
    """Whether a party process should offload its large local computations to a worker thread
    (:attr:`mpc.session.Session.offload`): when it has a core to spare, i.e. at least two cores
    for each of the ``parties_here`` party processes that share this machine."""
    return available_cores() >= 2 * parties_here


def single_threaded_blas() -> None:
    """One BLAS thread in this process (numpy's OpenBLAS, through ``threadpoolctl``)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def prepare_process() -> None:
    """What every party process does before its event loop starts: :func:`single_threaded_blas`
    and :func:`tune_allocator`."""
    single_threaded_blas()
    tune_allocator()


def tune_allocator() -> bool:
    """Apply :data:`ALLOCATOR_SETTINGS` with glibc's ``mallopt``; ``True`` if applied.

    Does nothing (``False``) where the C library is not glibc (macOS, musl): their allocators
    have their own policies, and nothing depends on this beyond speed.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, value in ALLOCATOR_SETTINGS.items())
    if not applied:
        _log.warning("glibc refused an allocator setting; large arrays keep their default mmap")
    return applied


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop if it is installed, else on the standard loop, after
    :func:`prepare_process`."""
    prepare_process()
    try:
        import uvloop
    except ImportError:  # not a platform uvloop supports: the standard loop does the same work
        return asyncio.run(main)
    return uvloop.run(main)

