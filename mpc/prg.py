"""Cryptographically secure pseudo-random generation: an AES-CTR PRG seeded from the OS CSPRNG.

Every secret in the runtime (shares, masks, keys, labels, noise) comes from :class:`PRG` or
directly from :func:`os.urandom`. numpy's random generators are never used for anything secret.

Security: AES-128 in counter mode is a PRG under the standard assumption that AES is a
pseudo-random permutation; outputs are indistinguishable from uniform for fewer than 2^64 blocks
per key. A PRG constructed without a seed draws a fresh 128-bit key from the OS CSPRNG.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.errors import ConfigError

__all__ = ["PRG", "SEED_BYTES"]

SEED_BYTES = 16
_ZERO_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(_ZERO_CHUNK))  # the plaintext of the keystream (immutable)
_SLACK = 15  # update_into needs room for one block less a byte beyond the input's length


class PRG:
    """AES-128-CTR keystream generator.

    Args:
        seed: 16 bytes; ``None`` (the default) draws a fresh seed from ``os.urandom``. Tests pass
            a seed from a fixture to make runs reproducible.

    Example:
        >>> prg = PRG(bytes(16))
        >>> prg.uint64((2, 3)).shape
        (2, 3)
    """

    __slots__ = ("_enc",)

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is None:
            seed = os.urandom(SEED_BYTES)
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
            raise ConfigError(f"PRG seed must be {SEED_BYTES} bytes")
        cipher = Cipher(algorithms.AES(bytes(seed)), modes.CTR(bytes(16)))
        self._enc = cipher.encryptor()

    @classmethod
    def derive(cls, key: bytes, label: str) -> PRG:
        """A PRG whose seed is derived from ``key`` and a domain-separation ``label``.

        Args:
            key: secret key material (any length, at least 16 bytes of entropy expected).
            label: a context string; different labels give independent streams.
        """
        digest = hashlib.sha256(b"mpc-prg-derive\x00" + label.encode() + b"\x00" + key).digest()
        return cls(digest[:SEED_BYTES])

    def bytes(self, n: int) -> bytes:
        """The next ``n`` keystream bytes."""
        if n < 0:
            raise ConfigError("byte count must be non-negative")
        return self._enc.update(bytes(n))

    def buffer(self, n: int) -> np.ndarray:
        """The next ``n`` keystream bytes as a writable uint8 array (encrypted in place)."""
        if n < 0:
            raise ConfigError("byte count must be non-negative")
        out = np.empty(n + _SLACK, dtype=np.uint8)
        mv = out.data
        pos = 0
        # A loop over 1 MiB chunks, not bytes.
        while pos < n:
            step = min(_ZERO_CHUNK, n - pos)
            self._enc.update_into(_ZEROS[:step], mv[pos : pos + step + _SLACK])
            pos += step
        return out[:n]

    def uint64(self, shape: int | tuple[int, ...] = ()) -> np.ndarray:
        """Uniform elements of Z_2^64 (a 0-d array for ``shape=()``)."""
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape_t, dtype=np.int64)) if shape_t else 1
        return self.buffer(8 * count).view(np.uint64).reshape(shape_t)

    def bits(self, shape: int | tuple[int, ...] = ()) -> np.ndarray:
        """Uniform bits as a uint8 array of 0/1 values."""
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape_t, dtype=np.int64)) if shape_t else 1
        raw = self.buffer((count + 7) // 8)
        return np.unpackbits(raw, count=count, bitorder="little").reshape(shape_t)

    def below(self, bound: int, shape: int | tuple[int, ...] = ()) -> np.ndarray:
        """Uniform integers in [0, bound) for 1 <= bound <= 2^63, by rejection sampling.

        Returns:
            An int64 array of the given shape.
        """
        if not 1 <= bound <= 1 << 63:
            raise ConfigError("bound must be in [1, 2^63]")
        shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape_t, dtype=np.int64)) if shape_t else 1
        limit = np.uint64((1 << 64) - ((1 << 64) % bound)) if (1 << 64) % bound else None
        out = np.empty(0, dtype=np.uint64)
        while out.size < count:
            draw = self.uint64(max(2 * (count - out.size), 16))
            if limit is not None:
                draw = draw[draw < limit]
            out = np.concatenate([out, draw])
        return (out[:count] % np.uint64(bound)).astype(np.int64).reshape(shape_t)
