"""Helpers shared by the SPDZ tests: local reconstruction and module-level SPMD programs."""

from __future__ import annotations

from typing import Any

import numpy as np

from mpc import ring128 as r128
from mpc.session import Session
from protocols import spdz
from protocols.spdz.dealer import InsecureDealer
from protocols.spdz.shares import AuthShare

M128 = 1 << 128
M64 = 1 << 64


def dealers(n: int, seed: bytes, **kwargs: Any) -> list[InsecureDealer]:
    """One dealer per party from one seed (what every party of a test holds)."""
    return [InsecureDealer(i, n, seed, allow_insecure=True, **kwargs) for i in range(n)]


def mac_key(ds: list[InsecureDealer]) -> int:
    """The MAC key alpha = sum alpha_i (as an integer, not reduced)."""
    return sum(int(d.mac_key_share()) for d in ds)


def open_checked(parts: list[AuthShare], alpha: int) -> np.ndarray:
    """Reconstruct ``x mod 2^64`` from every party's shares, checking the MAC relation.

    Raises:
        AssertionError: the MACs do not match (test helper).
    """
    total = parts[0].data
    for p in parts[1:]:
        total = r128.add(total, p.data)
    values = r128.to_int(total[0])
    macs = r128.to_int(total[1])
    flat_v, flat_m = np.asarray(values, dtype=object).reshape(-1), np.asarray(macs, dtype=object).reshape(-1)
    bad = [i for i, (v, m) in enumerate(zip(flat_v, flat_m)) if (alpha * int(v) - int(m)) % M128]
    assert not bad, f"MAC relation fails at {bad[:5]}"
    low = np.array([int(v) % M64 for v in flat_v], dtype=np.uint64)
    return low.reshape(parts[0].shape)


def setup_from_input(s: Session, inp: dict[str, Any], **kwargs: Any) -> spdz.Engine:
    """Attach an engine whose InsecureDealer seed travels in the test input."""
    dealer = InsecureDealer(s.party_id, s.n_parties, inp["seed"], allow_insecure=True)
    return spdz.setup(s, dealer, **kwargs)


async def prog_mul_reveal(s: Session, inp: dict[str, Any]) -> Any:
    """Each party inputs its array; returns the revealed elementwise product of all of them."""
    setup_from_input(s, inp)
    xs = await spdz.input_all(s, inp["x"])
    prod = xs[0]
    for x in xs[1:]:
        prod = prod * x
    return await spdz.reveal(s, prod)


def drive(gens: list[Any]) -> tuple[list[AuthShare], int]:
    """Run one SPMD generator per party in lockstep, opening what they yield (no network).

    Returns every party's result and the number of rounds (yields).
    """
    requests = [next(g) for g in gens]
    rounds = 1
    while True:
        opened = []
        for parts in zip(*requests):
            total = parts[0].share
            for p in parts[1:]:
                total = r128.add(total, p.share)
            opened.append(total)
        results, nxt = [], []
        for g in gens:
            try:
                nxt.append(g.send(opened))
            except StopIteration as done:
                results.append(done.value)
        if results:
            assert len(results) == len(gens), "parties finished in different rounds"
            return results, rounds
        requests = nxt
        rounds += 1


async def prog_less_reveal(s: Session, inp: dict[str, Any]) -> Any:
    """Each party inputs an array; returns the revealed ``x_0 < x_1``."""
    setup_from_input(s, inp)
    xs = await spdz.input_all(s, inp["x"])
    return await spdz.reveal(s, xs[0] < xs[1])


async def prog_mul_less_reveal(s: Session, inp: dict[str, Any]) -> Any:
    """Each party inputs an array; returns the revealed product of all and ``x_0 < x_1``."""
    setup_from_input(s, inp)
    xs = await spdz.input_all(s, inp["x"])
    prod = xs[0]
    for x in xs[1:]:
        prod = prod * x
    return await spdz.reveal(s, [prod, xs[0] < xs[1]])


class BitsOnly:
    """A provider without ``comparison_masks``: comparisons then use bits and triples."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "comparison_masks":
            raise AttributeError(name)
        return getattr(self._inner, name)


async def prog_relayed(s: Session, inp: dict[str, Any]) -> Any:
    """Products, a fixed-point product and a comparison, every open relayed (or not)."""
    eng = setup_from_input(s, inp, relay_min=inp["relay_min"])
    xs = await spdz.input_all(s, inp["x"])
    prod = xs[0] * xs[1]
    before = (s.stats.rounds, s.stats.bytes_sent)
    await eng.flush()
    mul_cost = (s.stats.rounds - before[0], s.stats.bytes_sent - before[1])
    f = await spdz.input(s, inp["f"] if s.party_id == 0 else None, owner=0, shape=inp["fshape"])
    out = await spdz.reveal(s, [prod, (xs[0] < xs[-1]), f * f])
    return out, mul_cost
