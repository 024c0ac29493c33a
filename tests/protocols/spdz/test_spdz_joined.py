"""Large products whose masks are computed into the open's share rows (opened in place)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from spdz_testkit import setup_from_input
from test_spdz_engine import tampered

from mpc.errors import MacCheckFailure
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols import spdz
from protocols.spdz import online
from protocols.spdz.engine import _JOINED_MIN

SIZE = _JOINED_MIN + 4_321


def ints(prg: PRG, size: int) -> np.ndarray:
    return (prg.below(1 << 21, (size,)) - (1 << 20)).astype(np.int64)


async def prog_products(s: Session, inp: dict[str, Any]) -> Any:
    """One large product alone (opened in place), then two in one level (copied), revealed."""
    eng = setup_from_input(s, inp, relay_min=inp["relay_min"])
    xs = await spdz.input_all(s, inp["x"])
    alone = xs[0] * xs[1]
    before = s.stats.rounds
    await eng.flush()
    rounds = s.stats.rounds - before
    pair = [xs[1] * xs[-1], xs[0] * xs[-1]]  # both pending: one batched open of two requests
    out = await spdz.reveal(s, [alone, *pair])
    return out, rounds


@pytest.mark.parametrize("n,relay_min", [(2, 1 << 40), (3, 1 << 40), (3, 1)])
def test_large_products_match_numpy(prg: PRG, seed: bytes, n: int, relay_min: int) -> None:
    xs = [ints(prg, SIZE) for _ in range(n)]
    outs = run_local(prog_products, [{"seed": seed, "x": x, "relay_min": relay_min} for x in xs])
    for (alone, first, second), rounds in outs:
        np.testing.assert_array_equal(alone, xs[0] * xs[1])
        np.testing.assert_array_equal(first, xs[1] * xs[-1])
        np.testing.assert_array_equal(second, xs[0] * xs[-1])
        assert rounds == (2 if n > 2 and relay_min == 1 else 1)


def test_joined_masks_equal_the_separate_ones(prg: PRG, seed: bytes) -> None:
    """Same [d], [e] as beaver_masks; ``rows`` is their value shares, flat, d then e."""
    from protocols.spdz.dealer import InsecureDealer
    from protocols.spdz.preprocessing import Requirements

    dealer = InsecureDealer(0, 2, seed, allow_insecure=True)
    dealer.reserve(Requirements(triples=3 * SIZE))
    t1, t2 = dealer.triples((SIZE,)), dealer.triples((3, SIZE // 3))
    for triple in (t1, t2):
        x, y = triple.c, triple.b  # any two sharings of the triple's shape
        d, e = online.beaver_masks(x, y, triple)
        dj, ej, rows = online.beaver_masks_joined(x, y, triple)
        for a, b in ((d, dj), (e, ej)):
            assert a.shape == b.shape
            assert np.array_equal(a.data.lo, b.data.lo) and np.array_equal(a.data.hi, b.data.hi)
        assert rows.shape == (2, 2 * x.size)
        assert np.array_equal(rows[0], np.concatenate([d.data.lo[0].reshape(-1), e.data.lo[0].reshape(-1)]))
        assert np.array_equal(rows[1], np.concatenate([d.data.hi[0].reshape(-1), e.data.hi[0].reshape(-1)]))


async def prog_cheat(s: Session, inp: dict[str, Any]) -> Any:
    setup_from_input(s, inp, relay_min=inp["relay_min"])
    xs = await spdz.input_all(s, inp["x"])
    x = tampered(xs[0], *inp["cheat"]) if s.party_id == 1 else xs[0]
    return await spdz.reveal(s, x * xs[1])


@pytest.mark.parametrize("cheat", [(0, 7), (1, 70)])
def test_tampered_operand_of_a_large_product_fails_everywhere(prg: PRG, seed: bytes, cheat: tuple[int, int]) -> None:
    xs = [ints(prg, SIZE) for _ in range(3)]
    ins = [{"seed": seed, "x": x, "relay_min": 1, "cheat": cheat} for x in xs]
    for o in run_parties(prog_cheat, ins, recv_timeout=5.0):
        assert isinstance(o.error, MacCheckFailure), (o.name, o.error)
