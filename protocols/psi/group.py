"""ristretto255 for PSI (libsodium through rbcl): hashing to the group, scalars, batched work.

A group element travels as its canonical 32-byte encoding (RFC 9496); a batch of ``m``
elements is an ``(m, 32)`` uint8 array. libsodium exposes one call per element, so the batch
functions below loop in Python over the elements (one ~38 us scalar multiplication each; the
loop adds about 1 %, measured) and run off the event loop:

- in a thread (default for small sets; rbcl calls libsodium through ``ctypes``, which releases
  the GIL, so concurrent pipelines of one party overlap), or
- in a :class:`GroupPool` of worker processes, each batch split into one piece per worker
  (measured on 2 cores: threads 1.45x, processes 1.85x the throughput of one core).

Secret scalars are passed to pool workers as call arguments over the executor's pipes: never
written to disk, not kept by the workers after the call.

Validation. Every element received from a peer is checked: a multiplied element by libsodium's
``crypto_scalarmult_ristretto255``, which rejects non-canonical or invalid encodings and an
identity result (equivalently an identity input, since scalars are non-zero mod the prime
order); an element that is only compared is checked with ``crypto_core_ristretto255_is_valid_point``
plus an explicit identity (all-zero encoding) check, since that function accepts the identity.
The libsodium bundled with rbcl also accepts encodings with bit 255 set, which RFC 9496
(section 4.3.1) requires to be rejected as non-canonical (they would give one element two
encodings, and compared encodings must be unique): both checks reject them. A bad element raises :class:`~mpc.errors.ProtocolViolation` naming its sender and index.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import numpy as np
from protocols.sodium import rbcl

from mpc.checks import check_int
from mpc.compiled import available_cores
from mpc.errors import ConfigError, ProtocolViolation

__all__ = [
    "POINT_BYTES",
    "SCALAR_BYTES",
    "GroupPool",
    "GroupEngine",
    "random_scalar",
    "invert_scalar",
    "multiply_scalars",
    "hash_to_group",
    "hash_and_multiply",
    "multiply",
    "first_invalid",
]

POINT_BYTES = 32
SCALAR_BYTES = 32
_DIGEST_BYTES = 64
_MIN_PIECE = 256
_ZERO_SCALAR = bytes(SCALAR_BYTES)

Work = Callable[[bytes, bytes], tuple[bytes, int]]


# -- scalars ----------------------------------------------------------------------------------


def random_scalar() -> bytes:
    """A uniform non-zero scalar mod the group order, from 64 bytes of ``os.urandom``."""
    while True:
        s = rbcl.crypto_core_ristretto255_scalar_reduce(os.urandom(64))
        if s != _ZERO_SCALAR:
            return bytes(s)


def invert_scalar(s: bytes) -> bytes:
    """``s^-1`` mod the group order (``s`` non-zero)."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_invert(s))


def multiply_scalars(a: bytes, b: bytes) -> bytes:
    """``a * b`` mod the group order."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_mul(a, b))


# -- batch work (module-level functions: picklable for the process pool) -----------------------


def hash_to_group(_: bytes, digests: bytes) -> tuple[bytes, int]:
    """Map 64-byte digests to group elements (RFC 9496 element derivation); never fails."""
    f = rbcl.crypto_core_ristretto255_from_hash
    step = _DIGEST_BYTES
    return b"".join([f(digests[i : i + step]) for i in range(0, len(digests), step)]), -1


def hash_and_multiply(scalar: bytes, digests: bytes) -> tuple[bytes, int]:
    """``scalar * H(d)`` for each 64-byte digest ``d``.

    Returns:
        The concatenated encodings, and ``-1``, or the index of the first digest whose product
        is the identity (probability about 2^-252 per digest; the caller raises).
    """
    h = rbcl.crypto_core_ristretto255_from_hash
    f = rbcl.crypto_scalarmult_ristretto255
    out = []
    i = 0
    try:
        for i in range(0, len(digests) // _DIGEST_BYTES):
            out.append(f(scalar, h(digests[i * _DIGEST_BYTES : (i + 1) * _DIGEST_BYTES])))
    except RuntimeError:
        return b"", i
    return b"".join(out), -1


def multiply(scalar: bytes, points: bytes) -> tuple[bytes, int]:
    """``scalar * P`` for each 32-byte encoding ``P``.

    Returns:
        The concatenated products and ``-1``, or ``b""`` and the index of the first encoding
        that is invalid, non-canonical or the identity.
    """
    f = rbcl.crypto_scalarmult_ristretto255
    out = []
    i = 0
    try:
        for i in range(0, len(points) // POINT_BYTES):
            p = points[i * POINT_BYTES : (i + 1) * POINT_BYTES]
            if p[-1] & 0x80:  # bit 255 set: non-canonical (RFC 9496 4.3.1), see module docstring
                return b"", i
            out.append(f(scalar, p))
    except RuntimeError:
        return b"", i
    return b"".join(out), -1


def first_invalid(_: bytes, points: bytes) -> tuple[bytes, int]:
    """``(b"", -1)`` if every 32-byte encoding is a valid non-identity element, else its index."""
    f = rbcl.crypto_core_ristretto255_is_valid_point
    zero = bytes(POINT_BYTES)
    for i in range(0, len(points) // POINT_BYTES):
        p = points[i * POINT_BYTES : (i + 1) * POINT_BYTES]
        if p[-1] & 0x80 or p == zero or not f(p):
            return b"", i
    return b"", -1


# -- where the work runs -----------------------------------------------------------------------


def _worker_init() -> None:
    """Runs once in every pool worker: drop rbcl's temporary copy of libsodium.

    Importing rbcl writes its bundled libsodium to a fresh temporary file (2.8 MB) that it
    never deletes, so every worker process would leave one behind. Once loaded, the library
    stays mapped, so the worker removes its own copy (best effort; the parent's is not ours).
    """
    path = getattr(sys.modules.get("rbcl._sodium"), "lib_path", None)
    if isinstance(path, str) and path.endswith(".so"):
        try:
            os.unlink(path)
        except OSError:
            pass


class GroupPool:
    """Worker processes for the group operations of large sets (an explicit resource).

    Create one per job (or one per node, reused across jobs) and close it; as a context manager
    it closes itself. Workers are started with the ``spawn`` method (nothing is inherited from
    the parent, which may be running an event loop and threads) and receive each batch and
    scalar over the executor's pipes.

    Args:
        workers: number of processes; the number of available cores if ``None``.
    """

    def __init__(self, workers: int | None = None) -> None:
        n = available_cores() if workers is None else workers
        n = check_int(n, "workers", lo=1)
        self.workers = n
        self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )

    async def run(self, work: Work, scalar: bytes, data: bytes) -> tuple[bytes, int]:
        """Run one piece of work in a worker process."""
        if self._executor is None:
            raise ConfigError("the group pool is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, work, scalar, data)

    def close(self) -> None:
        """Stop the workers (waits for running pieces)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> GroupPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> GroupPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)


class GroupEngine:
    """Batched group operations on ``(m, 32)`` / ``(m, 64)`` uint8 arrays, off the event loop.

    Args:
        pool: worker processes to spread batches over; ``None`` runs each batch in a thread.
    """

    def __init__(self, pool: GroupPool | None = None) -> None:
        self._pool = pool

    async def hash_and_multiply(self, scalar: bytes, digests: np.ndarray) -> np.ndarray:
        """``scalar * H(d)`` for each row of ``digests`` ((m, 64) uint8) -> (m, 32) uint8."""
        out, bad = await self._map(hash_and_multiply, scalar, digests, _DIGEST_BYTES)
        if bad >= 0:
            raise ConfigError(f"identifier digest {bad} maps to the identity (negligible event)")
        return out

    async def hash_to_group(self, digests: np.ndarray) -> np.ndarray:
        """``H(d)`` for each row of ``digests`` ((m, 64) uint8) -> (m, 32) uint8."""
        out, _ = await self._map(hash_to_group, _ZERO_SCALAR, digests, _DIGEST_BYTES)
        return out

    async def multiply(self, scalar: bytes, points: np.ndarray, sender: int) -> np.ndarray:
        """``scalar * P`` for each row of ``points`` received from ``sender``.

        Raises:
            ProtocolViolation: an invalid, non-canonical or identity encoding.
        """
        out, bad = await self._map(multiply, scalar, points, POINT_BYTES)
        if bad >= 0:
            raise ProtocolViolation(f"party {sender} sent an invalid group element (index {bad} of its chunk)")
        return out

    async def check(self, points: np.ndarray, sender: int) -> None:
        """Check that every row of ``points`` from ``sender`` is a valid non-identity element.

        Raises:
            ProtocolViolation: an invalid, non-canonical or identity encoding.
        """
        _, bad = await self._map(first_invalid, _ZERO_SCALAR, points, POINT_BYTES)
        if bad >= 0:
            raise ProtocolViolation(f"party {sender} sent an invalid group element (index {bad} of its chunk)")

    async def _map(self, work: Work, scalar: bytes, rows: np.ndarray, width: int) -> tuple[np.ndarray, int]:
        data = np.ascontiguousarray(rows, dtype=np.uint8).tobytes()
        m = len(data) // width
        if self._pool is None or m < 2 * _MIN_PIECE:
            blob, bad = await asyncio.to_thread(work, scalar, data)
            return _points(blob), bad
        pieces = min(self._pool.workers, m // _MIN_PIECE)
        bounds = [m * k // pieces for k in range(pieces + 1)]
        results = await asyncio.gather(
            *(self._pool.run(work, scalar, data[lo * width : hi * width]) for lo, hi in zip(bounds, bounds[1:]))
        )
        for lo, (_, bad) in zip(bounds, results):
            if bad >= 0:
                return _points(b""), lo + bad
        return _points(b"".join(blob for blob, _ in results)), -1


def _points(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint8).reshape(-1, POINT_BYTES)
