"""The SPDZ2k engine end to end on the dealer-free provider (memory mesh and real processes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from offline_testkit import SIZE, party_seeds, prog_engine

from mpc.session import Session
from parties.testing import run_local
from protocols import spdz
from protocols.spdz.preprocessing import Requirements
from protocols.spdz_offline import DealerFreePreprocessing

def inputs(n: int) -> list[dict[str, Any]]:
    return [{"ints": [p + 1, -2 * p, 7, 100 + p], "floats": [0.5 * (p + 1), -1.25, 3.0, 2.5 * p]} for p in range(n)]


@pytest.mark.parametrize("n", [2, 3])
def test_engine_on_dealer_free_material(n: int, seed: bytes) -> None:
    xs = inputs(n)
    res = run_local(prog_engine, xs, seeds=party_seeds(seed, n))
    expect_int = (np.array(xs[0]["ints"]) * np.array(xs[1]["ints"])).tolist()
    expect_fx = np.array(xs[0]["floats"]) * np.array(xs[1]["floats"])
    for r in res:
        assert r[0] == expect_int
        assert np.allclose(r[1], expect_fx, atol=1e-4)


def test_engine_over_processes(seed: bytes) -> None:
    xs = inputs(2)
    res = run_local(prog_engine, xs, transport="processes", recv_timeout=30.0)
    assert res[0][0] == (np.array(xs[0]["ints"]) * np.array(xs[1]["ints"])).tolist()
    assert res[0] == res[1]


async def prog_overlap(s: Session, inp: None) -> Any:
    """Production in the background while the online phase runs on earlier material."""
    provider = await DealerFreePreprocessing.create(s)
    await provider.produce(Requirements(triples=SIZE, input_masks={0: SIZE, 1: SIZE}, random_values=SIZE))
    later = Requirements(triples=SIZE, random_values=SIZE)
    task = provider.produce_in_background(later)
    spdz.setup(s, provider)
    a, b = await spdz.input_all(s, np.arange(SIZE, dtype=np.int64) + s.party_id)
    prod = a * b
    first = await spdz.reveal(s, prod)
    await provider.wait_for(later)
    second = await spdz.reveal(s, prod * a)
    await task
    return [np.asarray(first).tolist(), np.asarray(second).tolist()]


def test_background_production_overlaps_online_phase(seed: bytes) -> None:
    res = run_local(prog_overlap, [None, None], seeds=party_seeds(seed, 2))
    a, b = np.arange(SIZE), np.arange(SIZE) + 1
    assert res[0] == res[1] == [(a * b).tolist(), (a * b * a).tolist()]
