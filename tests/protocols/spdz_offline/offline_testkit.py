"""Helpers of the offline-phase tests: seeds, test-only reconstruction, module-level programs."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from mpc import ring128 as r128
from mpc.session import Session
from parties.testing import party_names
from protocols import spdz
from protocols.spdz.preprocessing import Requirements
from protocols.spdz_offline import DealerFreePreprocessing
from protocols.spdz.shares import AuthShare

M128 = 1 << 128
M64 = 1 << 64


def party_seeds(seed: bytes, n: int) -> dict[str, bytes]:
    """One PRG seed per party, derived from the test's seed."""
    return {name: hashlib.sha256(seed + name.encode()).digest()[:16] for name in party_names(n)}


def open_checked(parts: list[AuthShare], alpha: int) -> np.ndarray:
    """Test-only: reconstruct ``x mod 2^64`` (object ints) and check every MAC against ``alpha``.

    Raises:
        AssertionError: a MAC does not match.
    """
    total = parts[0].data
    for p in parts[1:]:
        total = r128.add(total, p.data)
    values = np.asarray(r128.to_int(total[0]), dtype=object)
    macs = np.asarray(r128.to_int(total[1]), dtype=object)
    bad = (alpha * values - macs) % M128
    assert not np.any(bad != 0), "MAC relation fails"
    return values % M64


def alpha_of(results: list[Any]) -> int:
    """The MAC key from every party's ``key`` entry (test-only)."""
    return sum(int(r["key"]) for r in results)


SIZE = 4


def need_for(n: int) -> Requirements:
    """What :func:`prog_engine` consumes (inputs, two products, one truncation, a reveal)."""
    return Requirements(
        triples=2 * SIZE,
        input_masks={p: SIZE * (2 if p < 2 else 1) for p in range(n)},
        random_values=2 * SIZE,
        truncation_pairs={16: SIZE},
    )


async def prog_engine(s: Session, inp: dict[str, Any]) -> Any:
    """Every party inputs an array; reveal the integer product and a fixed-point product."""
    provider = await DealerFreePreprocessing.create(s)
    await provider.produce(need_for(s.n_parties))
    spdz.setup(s, provider)
    ints = await spdz.input_all(s, np.asarray(inp["ints"], dtype=np.int64))
    prod = ints[0] * ints[1]
    x = await spdz.input(s, np.asarray(inp["floats"]), owner=0)
    y = await spdz.input(s, np.asarray(inp["floats"]), owner=1)
    out = await spdz.reveal(s, [prod, x * y])
    return [np.asarray(o).tolist() for o in out]
