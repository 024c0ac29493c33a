from __future__ import annotations

import numpy as np
import pytest

from mpc.errors import ConfigError
from mpc.prg import PRG


def test_same_seed_same_stream_and_fresh_seeds_differ(seed: bytes) -> None:
    a, b = PRG(seed), PRG(seed)
    assert a.bytes(100) == b.bytes(100)
    assert np.array_equal(a.uint64((3, 4)), b.uint64((3, 4)))
    assert PRG().bytes(32) != PRG().bytes(32)


def test_stream_is_continuous_across_calls(seed: bytes) -> None:
    whole = PRG(seed).bytes(3 << 20)
    p = PRG(seed)
    parts = p.bytes(10) + p.buffer(2 << 20).tobytes() + p.bytes((3 << 20) - 10 - (2 << 20))
    assert parts == whole


def test_keystream_is_aes_ctr(seed: bytes) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    assert PRG(seed).bytes(64) == enc.update(bytes(64))


def test_shapes_and_zero_d(prg: PRG) -> None:
    assert prg.uint64().shape == ()
    assert prg.uint64(5).shape == (5,)
    assert prg.uint64((0, 3)).shape == (0, 3)
    assert prg.bits((4, 5)).shape == (4, 5)


def test_bits_are_bits_and_balanced(prg: PRG) -> None:
    b = prg.bits(100_000)
    assert set(np.unique(b)) <= {0, 1}
    assert abs(b.mean() - 0.5) < 0.01


def test_below_is_in_range_and_roughly_uniform(prg: PRG) -> None:
    v = prg.below(6, 60_000)
    assert v.min() == 0 and v.max() == 5
    counts = np.bincount(v, minlength=6)
    assert np.all(np.abs(counts - 10_000) < 500)
    big = prg.below(1 << 63, 1000)
    assert big.min() >= 0


def test_uint64_high_bits_are_used(prg: PRG) -> None:
    v = prg.uint64(10_000)
    assert (v >> np.uint64(63)).mean() == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("bad", [b"", b"short", bytes(17), "not bytes"])
def test_bad_seed_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError):
        PRG(bad)  # type: ignore[arg-type]


def test_derive_separates_labels() -> None:
    key = bytes(range(32))
    assert PRG.derive(key, "a").bytes(16) != PRG.derive(key, "b").bytes(16)
    assert PRG.derive(key, "a").bytes(16) == PRG.derive(key, "a").bytes(16)


def test_bad_bound_refused(prg: PRG) -> None:
    with pytest.raises(ConfigError):
        prg.below(0)
    with pytest.raises(ConfigError):
        prg.bytes(-1)


@pytest.mark.parametrize("sizes", [[0], [1], [5, 1 << 20, 0, 77], [(1 << 20) + 1, 15, 3]])
def test_buffer_is_the_keystream_across_chunks(seed: bytes, sizes: list[int]) -> None:
    streamed, reference = PRG(seed), PRG(seed)
    parts = [streamed.buffer(n) for n in sizes]
    assert all(p.shape == (n,) and p.dtype == np.uint8 and p.flags.writeable for p, n in zip(parts, sizes))
    assert b"".join(p.tobytes() for p in parts) == reference.bytes(sum(sizes))
