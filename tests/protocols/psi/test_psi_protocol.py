"""PSI protocols on the in-memory mesh (and once over processes), checked against Python sets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.prg import PRG
from mpc.session import Session
from parties.testing import PartyOutcome, run_parties_async
from protocols.psi import GroupPool, Normalization, PsiConfig, psi_cardinality, psi_intersection, psi_join
from protocols.psi.streams import permutation

SALT = b"psi-protocol-tests-salt"
CFG = PsiConfig(salt=SALT, chunk_size=64, max_wait_seconds=5.0)


def make_sets(prg: PRG, sizes: list[int], common: int, pairwise: int = 0) -> list[list[str]]:
    """Random identifier sets: ``common`` ids in all, ``pairwise`` ids shared by neighbours only."""
    n = len(sizes)
    need = common + n * pairwise + sum(sizes)
    pool = [f"MRN-{x:016x}" for x in prg.uint64(need).tolist()]
    assert len(set(pool)) == need
    shared, rest = pool[:common], pool[common:]
    pairs = [rest[k * pairwise : (k + 1) * pairwise] for k in range(n)] if n > 2 else [[] for _ in range(n)]
    rest = rest[n * pairwise :]
    sets = []
    for p, size in enumerate(sizes):
        extra = pairs[p] + pairs[(p - 1) % n] if n > 2 else []
        own_count = size - common - len(extra)
        assert own_count >= 0
        own, rest = rest[:own_count], rest[own_count:]
        items = shared + extra + own
        sets.append([items[i] for i in permutation(prg, len(items))])
    return sets


def expected_rows(sets: list[list[str]]) -> list[list[int]]:
    common = set.intersection(*(set(s) for s in sets))
    return [[i for i, x in enumerate(s) if x in common] for s in sets]


async def run(program: Any, inputs: list[Any], seeds: PRG, **kwargs: Any) -> list[PartyOutcome]:
    names = [f"hospital-{i}" for i in range(len(inputs))]
    return await run_parties_async(
        program, dict(zip(names, inputs)), seeds={n: seeds.bytes(16) for n in names}, recv_timeout=5.0, **kwargs
    )


def results(outcomes: list[PartyOutcome]) -> list[Any]:
    for o in outcomes:
        if o.error is not None:
            raise o.error
    return [o.result for o in outcomes]


async def intersection_program(session: Session, ids: list[str]) -> Any:
    return await psi_intersection(session, ids, CFG)


async def cardinality_program(session: Session, ids: list[str]) -> Any:
    return await psi_cardinality(session, ids, CFG)


async def join_program(session: Session, ids: list[str]) -> Any:
    return await psi_join(session, ids, CFG)


# -- exact results, all modes -----------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5])
async def test_intersection_is_exact(prg: PRG, n: int) -> None:
    sets = make_sets(prg, [150 + 31 * i for i in range(n)], common=40, pairwise=10)
    out = results(await run(intersection_program, sets, prg))
    for rows, want in zip(out, expected_rows(sets)):
        assert rows.dtype == np.int64
        np.testing.assert_array_equal(rows, want)


@pytest.mark.parametrize("n", [2, 3, 5])
async def test_cardinality(prg: PRG, n: int) -> None:
    sets = make_sets(prg, [120 + 17 * i for i in range(n)], common=33, pairwise=7)
    assert results(await run(cardinality_program, sets, prg)) == [33] * n


@pytest.mark.parametrize("n", [2, 3, 5])
async def test_join_rows_are_aligned(prg: PRG, n: int) -> None:
    sets = make_sets(prg, [100 + 23 * i for i in range(n)], common=37, pairwise=5)
    out = results(await run(join_program, sets, prg))
    aligned = [[sets[p][r] for r in out[p]] for p in range(n)]
    assert all(a == aligned[0] for a in aligned)
    assert sorted(aligned[0]) == sorted(set.intersection(*(set(s) for s in sets)))
    for p in range(n):
        assert sorted(out[p].tolist()) == expected_rows(sets)[p]


async def test_join_order_is_fresh_per_job(prg: PRG) -> None:
    sets = make_sets(prg, [80, 90], common=60)
    first = results(await run(join_program, sets, prg))
    second = results(await run(join_program, sets, prg))
    as_ids = [[sets[0][r] for r in out[0]] for out in (first, second)]
    assert sorted(as_ids[0]) == sorted(as_ids[1])
    assert as_ids[0] != as_ids[1]  # fresh keys: the common order cannot link two jobs


# -- receivers --------------------------------------------------------------------------------


async def receivers_program(session: Session, inp: dict[str, Any]) -> Any:
    fn = psi_cardinality if inp["mode"] == "cardinality" else psi_intersection
    return await fn(session, inp["ids"], CFG, receivers=inp["receivers"])


@pytest.mark.parametrize(
    ("n", "receivers", "mode"),
    [
        (2, [0], "intersection"),
        (2, [1], "intersection"),
        (2, [1], "cardinality"),
        (3, [0], "intersection"),
        (3, [1], "intersection"),
        (3, [2], "intersection"),
        (4, [1, 3], "intersection"),
        (4, [0, 2], "cardinality"),
        (3, [1], "cardinality"),
    ],
)
async def test_only_receivers_learn(prg: PRG, n: int, receivers: list[int], mode: str) -> None:
    sets = make_sets(prg, [90 + 10 * i for i in range(n)], common=25, pairwise=5)
    inputs = [{"ids": s, "receivers": receivers, "mode": mode} for s in sets]
    outcomes = await run(receivers_program, inputs, prg)
    out = results(outcomes)
    want = expected_rows(sets)
    for p in range(n):
        if p not in receivers:
            assert out[p] is None
        elif mode == "cardinality":
            assert out[p] == 25
        else:
            np.testing.assert_array_equal(out[p], want[p])
    if n == 2:
        # A non-receiver gets only the other party's masked set: 32 bytes per element plus framing.
        for p in range(2):
            if p not in receivers:
                received = outcomes[p].stats["bytes_received"]
                assert 32 * len(sets[1 - p]) <= received < 32 * len(sets[1 - p]) + 2000


# -- sizes and identifiers --------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[0, 50], [0, 0], [40, 0, 30], [30, 30, 0, 30, 30]])
async def test_empty_sets(prg: PRG, sizes: list[int]) -> None:
    sets = make_sets(prg, sizes, common=0)
    for rows in results(await run(intersection_program, sets, prg)):
        assert rows.shape == (0,)
    assert results(await run(cardinality_program, sets, prg)) == [0] * len(sizes)


@pytest.mark.parametrize("n", [2, 3])
async def test_identical_and_disjoint_sets(prg: PRG, n: int) -> None:
    same = make_sets(prg, [70], common=0)[0]
    out = results(await run(intersection_program, [same] * n, prg))
    for rows in out:
        np.testing.assert_array_equal(rows, np.arange(70))
    disjoint = make_sets(prg, [60] * n, common=0)
    assert results(await run(cardinality_program, disjoint, prg)) == [0] * n


async def normalised_program(session: Session, ids: list[str]) -> Any:
    config = PsiConfig(salt=SALT, normalization=Normalization(casefold=True), duplicates="keep-first", chunk_size=3)
    return await psi_intersection(session, ids, config)


async def test_normalisation_and_duplicates_through_the_protocol(prg: PRG) -> None:
    a = ["Jos\u00e9 Garc\u00eda", "ANN  LEE", "bob", "bob ", "Zo\u00eb"]
    b = ["  jose\u0301 garci\u0301a", "x", "ann lee", "ZOE", "BOB"]
    out = results(await run(normalised_program, [a, b], prg))
    np.testing.assert_array_equal(out[0], [0, 1, 2])  # "bob " (row 3) is a duplicate of row 2
    np.testing.assert_array_equal(out[1], [0, 2, 4])


# -- where the work runs ----------------------------------------------------------------------


async def test_shared_process_pool(prg: PRG) -> None:
    sets = make_sets(prg, [700, 650], common=300)
    config = PsiConfig(salt=SALT, max_wait_seconds=20.0)
    async with GroupPool(2) as pool:

        async def program(session: Session, ids: list[str]) -> Any:
            return await psi_intersection(session, ids, config, pool=pool)

        out = results(await run(program, sets, prg))
    for rows, want in zip(out, expected_rows(sets)):
        np.testing.assert_array_equal(rows, want)


async def test_traffic_matches_docstring(prg: PRG) -> None:
    sets = make_sets(prg, [300, 200], common=50)
    outcomes = await run(intersection_program, sets, prg)
    results(outcomes)
    m = [len(s) for s in sets]
    chunks = sum(-(-k // CFG.chunk_size) for k in m)
    for p in range(2):
        # 32 (m_A + m_B) bytes of elements per party when both receive, plus the hello and framing.
        sent = outcomes[p].stats["bytes_sent"]
        assert 32 * (m[0] + m[1]) < sent < 32 * (m[0] + m[1]) + 200 * (chunks + 1)


# -- real processes ---------------------------------------------------------------------------


async def processes_program(session: Session, inp: dict[str, Any]) -> Any:
    config = PsiConfig(salt=inp["salt"], chunk_size=32)
    rows = await psi_join(session, inp["ids"], config)
    count = await psi_cardinality(session, inp["ids"], config, receivers=[2])
    return {"rows": rows, "count": -1 if count is None else count}


async def test_three_hospitals_in_processes(prg: PRG) -> None:
    sets = make_sets(prg, [60, 70, 80], common=21, pairwise=6)
    inputs = [{"ids": s, "salt": SALT} for s in sets]
    out = results(await run(processes_program, inputs, prg, transport="processes"))
    aligned = [[sets[p][r] for r in out[p]["rows"].tolist()] for p in range(3)]
    assert aligned[0] == aligned[1] == aligned[2]
    assert sorted(aligned[0]) == sorted(set(sets[0]) & set(sets[1]) & set(sets[2]))
    assert [o["count"] for o in out] == [-1, -1, 21]
