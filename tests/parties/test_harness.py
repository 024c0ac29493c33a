"""The public test harness on all three transports, with faults; real processes over TLS."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from mpc.errors import PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols.secure_sum import secure_sum
from transport.faults import Fault, FaultPlan


async def sum_program(session: Session, x: np.ndarray) -> np.ndarray:
    return await secure_sum(session, x)


async def silent_program(session: Session, x: dict[str, Any]) -> dict[str, Any]:
    """The last party never takes part; the others report how long until PeerUnavailable."""
    import asyncio

    if session.party_id == session.n_parties - 1:
        await asyncio.sleep(x["silence"])
        return {"silent": True}
    t = time.monotonic()
    try:
        await secure_sum(session, np.zeros(4, dtype=np.uint64))
    except PeerUnavailable as exc:
        return {"error": exc.code, "peer": exc.peer, "elapsed": time.monotonic() - t}
    return {"error": None}


def inputs(prg: PRG, n: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    return [prg.uint64(shape) for _ in range(n)]


def expected(xs: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(xs[0])
    for x in xs:
        total += x
    return total


@pytest.mark.parametrize("n", [2, 3, 5])
def test_memory(prg: PRG, n: int) -> None:
    xs = inputs(prg, n, (3, 2))
    for r in run_local(sum_program, xs):
        assert np.array_equal(r, expected(xs))


def test_websocket_in_process(prg: PRG) -> None:
    xs = inputs(prg, 3, (1000,))
    outcomes = run_parties(sum_program, xs, transport="websocket")
    assert all(o.ok for o in outcomes)
    for o in outcomes:
        assert np.array_equal(o.result, expected(xs))
        assert o.stats["bytes_sent"] >= 2 * 2 * 8000  # two rounds, two peers, 8 kB each


def test_processes_three_parties(prg: PRG) -> None:
    xs = inputs(prg, 3, (5,))
    results = run_local(sum_program, xs, transport="processes")
    for r in results:
        assert np.array_equal(r, expected(xs))


def test_processes_disconnect_mid_stream_still_exact(prg: PRG) -> None:
    # ~4 MB per share: chunked into many frames; the connection is torn down in the middle.
    xs = inputs(prg, 3, (500_000,))
    plan = FaultPlan([Fault("disconnect", src="party-0", dst="party-1", after=2)])
    results = run_local(sum_program, xs, transport="processes", faults=plan, recv_timeout=20)
    for r in results:
        assert np.array_equal(r, expected(xs))


def test_processes_silent_peer_gives_peer_unavailable_within_timeout() -> None:
    timeout = 2.0
    outcomes = run_parties(silent_program, [{"silence": 3 * timeout}] * 3, transport="processes", recv_timeout=timeout)
    for o in outcomes[:2]:
        assert o.ok and o.result["error"] == "peer-unavailable"
        assert o.result["elapsed"] < timeout + 3.0
    assert outcomes[2].result == {"silent": True}


def test_errors_are_reported_per_party(prg: PRG) -> None:
    xs = inputs(prg, 3, (4,))
    xs[1] = prg.uint64((5,))  # wrong shape at one party
    outcomes = run_parties(sum_program, xs, recv_timeout=1.0)
    assert not all(o.ok for o in outcomes)
    assert all(isinstance(o.error, (ProtocolViolation, PeerUnavailable)) for o in outcomes if not o.ok)
    with pytest.raises((ProtocolViolation, PeerUnavailable)):
        run_local(sum_program, xs, recv_timeout=1.0)


def test_closures_are_refused_for_processes() -> None:
    from mpc.errors import ConfigError

    async def local(session: Session, x: Any) -> Any:
        return x

    with pytest.raises(ConfigError):
        run_parties(local, [1, 2], transport="processes")
