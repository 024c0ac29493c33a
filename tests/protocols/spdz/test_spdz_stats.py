"""Joint statistics over a column split among the parties, against numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc.errors import ConfigError, MacCheckFailure, PeerUnavailable
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols import spdz
from protocols.spdz.dealer import InsecureDealer
from protocols.spdz.stats import joint_statistics, local_summary, statistics_requirements, summarize
from transport.faults import Fault, FaultPlan


async def prog_stats(s: Session, inp: dict[str, Any]) -> Any:
    plain = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True)
    need = statistics_requirements(s.n_parties, [s.party_index(r) for r in inp["to"]], plain)
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True, capacity=need)
    out = await joint_statistics(s, inp["column"], inp["to"], preprocessing=dealer, offset=inp.get("offset", 0.0))
    return out, dealer.remaining()


def expected(columns: list[np.ndarray]) -> dict[str, Any]:
    x = np.concatenate(columns).astype(np.float64)
    return {"count": x.size, "sum": x.sum(), "mean": x.mean(), "variance": x.var(), "sample_variance": x.var(ddof=1),
            "min": x.min(), "max": x.max()}


def check_stats(got: dict[str, Any], want: dict[str, Any], atol: float) -> None:
    assert got["count"] == want["count"]
    for key in ("sum", "mean", "variance", "sample_variance", "min", "max"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=atol), key


@pytest.mark.parametrize("n,to", [(2, [0, 1]), (3, ["party-1"]), (5, [0, 4])])
def test_statistics_match_numpy(prg: PRG, seed: bytes, n: int, to: list[Any]) -> None:
    sizes = [7, 0, 13, 1, 30][:n]  # an empty party among them (n >= 2)
    cols = [(prg.below(2001, (k,)).astype(np.float64) - 1000) / 8 for k in sizes]
    results = run_local(prog_stats, [{"seed": seed, "column": c, "to": to} for c in cols])
    receivers = {int(t.split("-")[1]) if isinstance(t, str) else t for t in to}
    for i, (got, left) in enumerate(results):
        assert all(v == 0 for v in left.values())  # consumed exactly statistics_requirements
        if i in receivers:
            check_stats(got, expected(cols), atol=1e-9)  # multiples of 1/8 are exact in fixed point
        else:
            assert got is None


def test_statistics_with_offset_keep_precision(seed: bytes) -> None:
    cols = [np.array([1e9 + 0.5, 1e9 - 0.25, 1e9]), np.array([1e9 + 1.0]), np.array([1e9 - 2.0, 1e9 + 0.125])]
    results = run_local(prog_stats, [{"seed": seed, "column": c, "to": [0, 1, 2], "offset": 1e9} for c in cols])
    for got, _ in results:
        check_stats(got, expected(cols), atol=1e-6)


def test_statistics_of_no_rows_and_one_row(seed: bytes) -> None:
    empty = run_local(prog_stats, [{"seed": seed, "column": np.array([]), "to": [0]}] * 2)
    assert empty[0][0] == {"count": 0, "sum": 0.0, "mean": None, "variance": None, "sample_variance": None,
                           "min": None, "max": None}
    one = run_local(prog_stats, [{"seed": seed, "column": c, "to": [1]} for c in (np.array([]), np.array([-3.5]))])
    assert one[1][0] == {"count": 1, "sum": -3.5, "mean": -3.5, "variance": 0.0, "sample_variance": None,
                         "min": -3.5, "max": -3.5}


def test_local_summary_and_summarize_pure() -> None:
    enc = local_summary(np.array([1.5, -2.0, 4.0]), 3)
    assert enc.tolist() == [3 << 16, int(3.5 * 65536), int(22.25 * 65536), 4 << 16, 2 << 16]
    out = summarize(enc.tolist())
    assert out["mean"] == pytest.approx(3.5 / 3) and out["min"] == -2.0 and out["max"] == 4.0
    for bad in (np.array([np.nan]), np.array([2.0**41]), np.ones((2, 2)), np.array(["a"]), np.full(10, 2.0**30)):
        with pytest.raises(ConfigError):
            local_summary(bad, 3)
    with pytest.raises(ConfigError):
        statistics_requirements(0)


async def prog_stats_engine(s: Session, inp: dict[str, Any]) -> Any:
    spdz.setup(s, InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True))  # the session's engine
    return await joint_statistics(s, inp["column"], inp["to"])


def test_statistics_on_the_session_engine_and_bad_input(seed: bytes) -> None:
    cols = [np.array([1.0, 2.0]), np.array([3.0])]
    for got in run_local(prog_stats_engine, [{"seed": seed, "column": c, "to": [0, 1]} for c in cols]):
        check_stats(got, expected(cols), atol=1e-9)
    bad = run_parties(prog_stats_engine, [{"seed": seed, "column": c, "to": [0]} for c in (np.array([np.inf]), cols[1])],
                      recv_timeout=0.5)
    assert isinstance(bad[0].error, ConfigError) and isinstance(bad[1].error, PeerUnavailable)
    none = run_parties(prog_stats_engine, [{"seed": seed, "column": c, "to": []} for c in cols], recv_timeout=0.5)
    assert all(isinstance(o.error, ConfigError) for o in none)


def test_statistics_tamper_aborts_every_party_or_changes_nothing(seed: bytes) -> None:
    """A tampered opening: every party aborts, or (a flip in bits 64-127 of an opened value,
    which changes no result mod 2^64 and escapes the check with probability 2^-(128 - bit))
    the receiver's statistics are exactly right. Never a wrong output, never a split outcome."""
    cols = [np.array([1.0, 2.0]), np.array([3.0]), np.array([-1.0])]
    plan = FaultPlan([Fault("tamper", src="party-2", dst="party-0", after=3, offset=-65, mask=0x08)])
    outcomes = run_parties(prog_stats, [{"seed": seed, "column": c, "to": [1]} for c in cols], faults=plan, recv_timeout=1.0)
    errors = [o.error for o in outcomes]
    if any(e is not None for e in errors):
        assert all(isinstance(e, MacCheckFailure) for e in errors), errors
    else:
        check_stats(outcomes[1].result[0], expected(cols), atol=1e-4)
        assert outcomes[0].result[0] is None and outcomes[2].result[0] is None


async def prog_stats_dealer_free(s: Session, column: np.ndarray) -> Any:
    from protocols.spdz_offline import DealerFreePreprocessing

    provider = await DealerFreePreprocessing.create(s)
    await provider.produce(statistics_requirements(s.n_parties, [0, 2], provider))
    return await joint_statistics(s, column, ["party-0", "party-2"], preprocessing=provider)


def test_statistics_on_the_dealer_free_provider() -> None:
    cols = [np.array([1.5, 2.5, -3.0]), np.array([], dtype=np.float64), np.array([10.0, 0.25])]
    results = run_local(prog_stats_dealer_free, cols, recv_timeout=60)
    assert results[1] is None
    for got in (results[0], results[2]):
        check_stats(got, expected(cols), atol=1e-9)
