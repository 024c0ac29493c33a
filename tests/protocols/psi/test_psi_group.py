"""PSI group layer and pure functions: hashing, commutativity, validation, matching, pool."""

from __future__ import annotations

import numpy as np
import pytest
import rbcl

from mpc.errors import ConfigError, ProtocolViolation
from mpc.prg import PRG
from protocols.psi.group import (
    GroupEngine,
    GroupPool,
    first_invalid,
    hash_and_multiply,
    hash_to_group,
    invert_scalar,
    multiply,
    multiply_scalars,
    random_scalar,
)
from protocols.psi.multi_party import intersect_all, ring_finals, ring_path
from protocols.psi.rowsets import byte_order, find_rows, first_occurrences, has_repeats
from protocols.psi.streams import check_distinct, check_points, link_rows, n_chunks, permutation
from protocols.psi.two_party import count_matches, join_rows, match_rows


def digests(prg: PRG, m: int) -> np.ndarray:
    return prg.buffer(64 * m).reshape(m, 64)


def valid_points(prg: PRG, m: int) -> np.ndarray:
    blob, _ = hash_to_group(b"", digests(prg, m).tobytes())
    return np.frombuffer(blob, dtype=np.uint8).reshape(m, 32).copy()


def test_scalars() -> None:
    a, b = random_scalar(), random_scalar()
    assert len(a) == 32 and a != b and a != bytes(32)
    assert multiply_scalars(a, invert_scalar(a)) == (1).to_bytes(32, "little")


def test_commutative_masking_and_inverse(prg: PRG) -> None:
    d = digests(prg, 20).tobytes()
    a, b = random_scalar(), random_scalar()
    ha, bad = hash_and_multiply(a, d)
    assert bad == -1
    hb, _ = hash_and_multiply(b, d)
    hab, _ = multiply(b, ha)
    hba, _ = multiply(a, hb)
    assert hab == hba and hab != ha
    h, _ = hash_to_group(b"", d)
    back, _ = multiply(invert_scalar(a), ha)
    assert back == h
    ab, _ = multiply(multiply_scalars(a, b), h)
    assert ab == hab


def test_invalid_encodings_are_located(prg: PRG) -> None:
    points = valid_points(prg, 6)
    s = random_scalar()
    assert multiply(s, points.tobytes())[1] == -1
    assert first_invalid(b"", points.tobytes()) == (b"", -1)
    bad_cases = {
        "identity": bytes(32),
        "non-canonical": b"\xff" * 32,
        "high bit": points[0].tobytes()[:31] + bytes([points[0][31] | 0x80]),
        "negative (odd) encoding": (1).to_bytes(32, "little"),
    }
    # rbcl's libsodium itself accepts the identity and (unlike RFC 9496) bit 255 set: we reject both.
    assert rbcl.crypto_core_ristretto255_is_valid_point(bytes(32))
    for what, enc in bad_cases.items():
        tampered = points.copy()
        tampered[4] = np.frombuffer(enc, dtype=np.uint8)
        assert multiply(s, tampered.tobytes()) == (b"", 4), what
        assert first_invalid(b"", tampered.tobytes()) == (b"", 4), what


async def test_engine_raises_protocol_violation(prg: PRG) -> None:
    engine = GroupEngine()
    points = valid_points(prg, 5)
    points[2] = 0
    with pytest.raises(ProtocolViolation, match="party 3 .*index 2"):
        await engine.multiply(random_scalar(), points, 3)
    with pytest.raises(ProtocolViolation, match="party 1 .*index 2"):
        await engine.check(points, 1)


async def test_pool_matches_threads(prg: PRG) -> None:
    m = 1500  # above the pool's minimum piece size, so the batch is split across workers
    d = digests(prg, m)
    s = random_scalar()
    threads = GroupEngine()
    with pytest.raises(ConfigError):
        GroupPool(0)
    async with GroupPool(2) as pool:
        pooled = GroupEngine(pool)
        a = await pooled.hash_and_multiply(s, d)
        np.testing.assert_array_equal(a, await threads.hash_and_multiply(s, d))
        t = random_scalar()
        np.testing.assert_array_equal(await pooled.multiply(t, a, 1), await threads.multiply(t, a, 1))
        bad = a.copy()
        bad[1234] = 0xFF
        with pytest.raises(ProtocolViolation, match="index 1234"):
            await pooled.multiply(t, bad, 1)
        with pytest.raises(ProtocolViolation, match="index 1234"):
            await pooled.check(bad, 1)
    with pytest.raises(ConfigError, match="closed"):
        await pool.run(multiply, s, a.tobytes())


# -- streams and matching (pure) --------------------------------------------------------------


def test_check_points_shapes() -> None:
    ok = np.zeros((3, 32), dtype=np.uint8)
    assert check_points(ok, 3, 1).shape == (3, 32)
    for bad, match in [
        (np.zeros((4, 32), dtype=np.uint8), "4 elements"),
        (np.zeros((3, 31), dtype=np.uint8), "31 bytes"),
        (np.zeros((3, 32), dtype=np.uint16), "uint8"),
        (np.zeros(96, dtype=np.uint8), "uint8"),
        (b"\x00" * 96, "bytes"),
    ]:
        with pytest.raises(ProtocolViolation, match=match):
            check_points(bad, 3, 1)


def test_n_chunks_and_permutation(prg: PRG) -> None:
    assert [n_chunks(n, 4) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    p = permutation(prg, 1000)
    assert p.dtype == np.int64
    np.testing.assert_array_equal(np.sort(p), np.arange(1000))
    assert not np.array_equal(p, np.arange(1000))
    assert permutation(prg, 0).shape == (0,)


def test_matching_functions(prg: PRG) -> None:
    pts = valid_points(prg, 10)
    own = pts[[3, 0, 7, 5]]
    own_rows = np.array([30, 0, 70, 50], dtype=np.int64)
    peer = pts[[5, 9, 3, 8]]
    np.testing.assert_array_equal(match_rows(own, own_rows, peer), [30, 50])
    joined = join_rows(own, own_rows, peer)
    expect = sorted([(pts[3].tobytes(), 30), (pts[5].tobytes(), 50)])
    np.testing.assert_array_equal(joined, [r for _, r in expect])
    assert count_matches(own, peer) == 2
    assert count_matches(own, pts[:0]) == 0
    np.testing.assert_array_equal(link_rows(own, own_rows, pts[[7, 3]], 0), [70, 30])
    with pytest.raises(ProtocolViolation, match="outside"):
        link_rows(own, own_rows, pts[[7, 1]], 0)
    with pytest.raises(ProtocolViolation, match="repeated"):
        link_rows(own, own_rows, pts[[7, 7]], 0)
    with pytest.raises(ProtocolViolation, match="outside"):
        link_rows(own[:0], own_rows[:0], pts[[7]], 0)
    with pytest.raises(ProtocolViolation, match="repeated"):
        check_distinct(pts[[1, 2, 1]], 4)
    common = intersect_all([pts[[1, 2, 3, 4]], pts[[4, 3, 9]], pts[[0, 3, 4, 5]]])
    assert sorted(r.tobytes() for r in common) == sorted([pts[3].tobytes(), pts[4].tobytes()])
    assert [r.tobytes() for r in common] == sorted(r.tobytes() for r in common)
    assert intersect_all([pts[:3], pts[3:6]]).shape == (0, 32)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_ring_paths_visit_every_key_once(n: int) -> None:
    for owner in range(n):
        path = ring_path(owner, n)
        finals = ring_finals(owner)
        if owner in (0, 1):
            # Everyone but the leader and the helper; both receive the result (L_0 or L_1).
            assert path == list(range(2, n)) and sorted(finals) == [0, 1]
        else:
            assert sorted(path) == sorted(set(range(n)) - {owner}) and finals == [owner]
            assert path[0] == (owner + 1) % n and path[-1] == (owner - 1) % n


def test_rowsets_are_exact_even_with_shared_prefixes(prg: PRG) -> None:
    rows = prg.buffer(40 * 8).reshape(40, 8).copy()
    rows = np.concatenate([rows, rows[:, :4]], axis=1)  # (40, 12)
    rows[5, :8] = rows[9, :8]  # two distinct rows sharing their 8-byte prefix
    rows[17] = rows[3]  # a repeated row
    assert not np.array_equal(rows[5], rows[9])
    np.testing.assert_array_equal(first_occurrences(rows), [i for i in range(40) if i != 17])
    assert has_repeats(rows) and not has_repeats(np.delete(rows, 17, axis=0))
    hay = np.delete(rows, [17, 9], axis=0)  # distinct, without row 9
    found = find_rows(rows[[0, 5, 9, 3]], hay)
    np.testing.assert_array_equal(hay[found[[0, 1, 3]]], rows[[0, 5, 3]])
    assert found[2] == -1
    both = np.delete(rows, 17, axis=0)  # keeps rows 5 and 9: the exact (byte-string) path
    np.testing.assert_array_equal(both[find_rows(rows[[9, 5, 0]], both)], rows[[9, 5, 0]])
    assert find_rows(prg.buffer(12).reshape(1, 12), both)[0] == -1
    narrow = rows[:, :3].copy()  # rows narrower than the 8-byte prefix
    np.testing.assert_array_equal(find_rows(narrow[[2, 7]], narrow[[7, 1, 2]]), [2, 0])
    order = byte_order(rows[:10])
    assert [rows[i].tobytes() for i in order] == sorted(r.tobytes() for r in rows[:10])
    assert find_rows(rows[:0], rows).shape == (0,) and (find_rows(rows, rows[:0]) == -1).all()
