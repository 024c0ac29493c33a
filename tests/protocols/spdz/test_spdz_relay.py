"""Relayed opens (three or more parties, large opens): results, rounds, bytes and cheating relays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from spdz_testkit import prog_relayed, setup_from_input

from mpc.errors import MacCheckFailure, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols import spdz


def ints(prg: PRG, shape: tuple[int, ...], bound: int = 1 << 20) -> np.ndarray:
    return (prg.below(2 * bound, shape) - bound).astype(np.int64)


def relay_inputs(prg: PRG, seed: bytes, n: int, size: int, relay_min: int) -> list[dict[str, Any]]:
    xs = [ints(prg, (size,)) for _ in range(n)]
    f = (prg.below(2000, (3, 4)).astype(np.float64) - 1000.0) / 37.0
    return [{"seed": seed, "x": x, "f": f, "fshape": (3, 4), "relay_min": relay_min} for x in xs]


@pytest.mark.parametrize("n", [3, 5])
def test_relayed_opens_match_numpy_and_cut_the_bytes(prg: PRG, seed: bytes, n: int) -> None:
    size = 300
    relayed = relay_inputs(prg, seed, n, size, relay_min=1)
    direct = [{**inp, "relay_min": 1 << 40} for inp in relayed]
    outs_relayed, outs_direct = run_local(prog_relayed, relayed), run_local(prog_relayed, direct)
    xs, f = [inp["x"] for inp in relayed], relayed[0]["f"]
    for (prod, lt, ff), _ in (*outs_relayed, *outs_direct):
        np.testing.assert_array_equal(prod, xs[0] * xs[1])
        np.testing.assert_array_equal(lt, (xs[0] < xs[-1]).astype(np.int64))
        np.testing.assert_allclose(ff, f * f, atol=1e-3)
    (_, (rounds_r, bytes_r)), (_, (rounds_d, bytes_d)) = outs_relayed[0], outs_direct[0]
    assert (rounds_r, rounds_d) == (2, 1)
    # payload per party: 16 bytes per element to each of n - 1 peers, or 2 (n - 1) / n of it
    elements = 2 * size
    assert bytes_d >= 16 * elements * (n - 1)
    assert bytes_r < bytes_d * (2 * (n - 1) / n) + 1024 * (n - 1)
    assert bytes_r >= 16 * elements * 2 * (n - 1) / n


def test_two_parties_never_relay(prg: PRG, seed: bytes) -> None:
    outs = run_local(prog_relayed, relay_inputs(prg, seed, 2, 50, relay_min=1))
    for (prod, _, _), (rounds, _) in outs:
        assert rounds == 1 and prod.shape == (50,)


async def prog_cheating_relay(s: Session, inp: dict[str, Any]) -> Any:
    """Party 1 relays a wrong sum of its slice to party 0 only (``inp['cheat']`` picks how)."""
    eng = setup_from_input(s, inp, relay_min=1)
    if s.party_id == 1:
        honest = eng.session.exchange

        async def exchange(name: str, payload: Any, *, per_peer: bool = False) -> Any:
            if name != "open-relayed":
                return await honest(name, payload, per_peer=per_peer)
            wrong = {k: v.copy() for k, v in payload.items()}
            if inp["cheat"] == "value":
                wrong["v0"][-1:] += np.uint64(1 << 40)  # low limb: the opened value changes mod 2^64
            else:
                wrong["v0"] = wrong["v0"][:-1]  # a malformed slice
            return await honest(name, {p: (wrong if p == 0 else payload) for p in s.others}, per_peer=True)

        eng.session.exchange = exchange  # type: ignore[method-assign]
    xs = await spdz.input_all(s, inp["x"])
    return await spdz.reveal(s, xs[0] * xs[1])


def test_relay_sending_different_sums_is_caught_everywhere(prg: PRG, seed: bytes) -> None:
    inputs = [{"seed": seed, "x": ints(prg, (40,)), "cheat": "value"} for _ in range(3)]
    outcomes = run_parties(prog_cheating_relay, inputs, recv_timeout=2.0)
    for o in (outcomes[0], outcomes[2]):  # the honest parties
        assert isinstance(o.error, MacCheckFailure), o.error


def test_malformed_relayed_slice_is_a_protocol_violation(prg: PRG, seed: bytes) -> None:
    inputs = [{"seed": seed, "x": ints(prg, (40,)), "cheat": "shape"} for _ in range(3)]
    outcomes = run_parties(prog_cheating_relay, inputs, recv_timeout=1.0)
    assert isinstance(outcomes[0].error, ProtocolViolation), outcomes[0].error


def test_relayed_opens_between_processes(prg: PRG, seed: bytes) -> None:
    """Three party processes over TLS websockets, every open relayed (per-peer slices)."""
    inputs = relay_inputs(prg, seed, 3, 2000, relay_min=1)
    xs, f = [inp["x"] for inp in inputs], inputs[0]["f"]
    for (prod, lt, ff), (rounds, _) in run_local(prog_relayed, inputs, transport="processes", recv_timeout=20):
        np.testing.assert_array_equal(prod, xs[0] * xs[1])
        np.testing.assert_array_equal(lt, (xs[0] < xs[-1]).astype(np.int64))
        np.testing.assert_allclose(ff, f * f, atol=1e-3)
        assert rounds == 2
