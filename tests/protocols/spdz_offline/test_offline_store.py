"""Persisted material: encrypted, bound to its parties and store, consumed exactly once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from offline_testkit import alpha_of, open_checked, party_seeds

from mpc.errors import ConfigError, PreprocessingExhausted
from mpc.prg import PRG
from mpc.session import Session
from parties.testing import run_local, run_parties
from protocols.spdz.preprocessing import Requirements
from protocols.spdz_offline import DealerFreePreprocessing, load, preprocessing_for_job, save

M64 = 1 << 64


def storage_key(prg: PRG) -> bytes:
    return prg.bytes(32)


async def prog_save(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    p = await DealerFreePreprocessing.create(s)
    await p.produce(Requirements(triples=10, input_masks={0: 3}))
    used = p.triples((4,))
    path = Path(inp["dir"]) / f"{s.parties[s.party_id]}.store"
    saved = save(p, path, inp["key"])
    with pytest.raises(PreprocessingExhausted):
        p.triples((1,))  # saving moved everything out of the live provider
    return {"key": p.mac_key_share(), "used": used, "saved": saved, "store_id": p.store_id}


async def prog_load(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    path = Path(inp["dir"]) / f"{s.parties[s.party_id]}.store"
    p = await load(s, path, inp["key"])
    out = {"key": p.mac_key_share(), "remaining": p.remaining(), "store_id": p.store_id}
    out["triples"] = p.triples((6,))
    out["mask"] = p.input_masks(0, (3,))
    await p.produce(Requirements(triples=2))  # the reloaded provider produces more (new base OTs)
    out["fresh"] = p.triples((2,))
    return out


def test_save_and_reload_consumes_exactly_once(tmp_path: Path, seed: bytes, prg: PRG) -> None:
    key = storage_key(prg)
    inp = {"dir": str(tmp_path), "key": key}
    saved = run_local(prog_save, [inp, inp], seeds=party_seeds(seed, 2))
    assert saved[0]["saved"] == {"input_masks/0": 3, "triples": 6}
    blob = (tmp_path / "party-0.store").read_bytes()
    assert saved[0]["used"].a.data.lo.tobytes()[:16] not in blob  # encrypted at rest
    loaded = run_local(prog_load, [inp, inp], seeds=party_seeds(seed + b"2", 2))
    assert loaded[0]["remaining"] == {"input_masks/0": 3, "triples": 6}
    assert [int(r["key"]) for r in loaded] == [int(r["key"]) for r in saved]
    assert loaded[0]["store_id"] == saved[0]["store_id"]
    alpha = alpha_of(saved)
    a, b, c = (open_checked([getattr(r["triples"], f) for r in loaded], alpha) for f in "abc")
    assert all((int(x) * int(y) - int(z)) % M64 == 0 for x, y, z in zip(a, b, c))
    used = open_checked([r["used"].a for r in saved], alpha)
    assert not set(int(v) for v in used) & set(int(v) for v in a)  # not the consumed ones
    mask = open_checked([r["mask"].mask for r in loaded], alpha)
    assert [int(v) for v in mask] == [int(v) for v in loaded[0]["mask"].value]
    fa, fb, fc = (open_checked([getattr(r["fresh"], f) for r in loaded], alpha) for f in "abc")
    assert all((int(x) * int(y) - int(z)) % M64 == 0 for x, y, z in zip(fa, fb, fc))
    # The files were claimed: a second load finds nothing.
    assert not any(tmp_path.iterdir())
    outcomes = run_parties(prog_load, [inp, inp], recv_timeout=2.0)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)


def test_wrong_key_tampering_and_mismatched_stores(tmp_path: Path, seed: bytes, prg: PRG) -> None:
    key = storage_key(prg)
    inp = {"dir": str(tmp_path), "key": key}
    run_local(prog_save, [inp, inp], seeds=party_seeds(seed, 2))
    first = {n: (tmp_path / f"{n}.store").read_bytes() for n in ("party-0", "party-1")}
    # Wrong key: every party refuses and nothing is consumed.
    bad = {"dir": str(tmp_path), "key": bytes(32)}
    outcomes = run_parties(prog_load, [bad, bad], recv_timeout=2.0)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["party-0.store", "party-1.store"]
    # A flipped byte at one party: every party refuses.
    flipped = bytearray(first["party-1"])
    flipped[-5] ^= 1
    (tmp_path / "party-1.store").write_bytes(bytes(flipped))
    outcomes = run_parties(prog_load, [inp, inp], recv_timeout=2.0)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)
    # Stores of two different saves: every party refuses.
    run_local(prog_save, [inp, inp], seeds=party_seeds(seed + b"x", 2))
    (tmp_path / "party-1.store").write_bytes(first["party-1"])
    outcomes = run_parties(prog_load, [inp, inp], recv_timeout=2.0)
    assert all(isinstance(o.error, ConfigError) for o in outcomes), [o.error for o in outcomes]
    # One party has no store: every party refuses, the other's file stays.
    (tmp_path / "party-1.store").unlink()
    outcomes = run_parties(prog_load, [inp, inp], recv_timeout=2.0)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)
    assert (tmp_path / "party-0.store").exists()
    # A store for another party set is refused.
    run_local(prog_save, [inp, inp], seeds=party_seeds(seed + b"y", 2))
    outcomes = run_parties(prog_load, [inp, inp], names=["other-0", "party-1"], recv_timeout=2.0)
    assert all(isinstance(o.error, ConfigError) for o in outcomes)


async def prog_job(s: Session, inp: dict[str, Any]) -> dict[str, Any]:
    """Two jobs in a row on a node: the second reloads what the first left."""
    path = Path(inp["dir"]) / f"{s.parties[s.party_id]}.store"
    need = Requirements(triples=inp["triples"], bits=inp["bits"])
    p = await preprocessing_for_job(s, need, store_path=path, storage_key=inp["key"])
    out: dict[str, Any] = {"kind": type(p).__name__, "remaining": p.remaining(), "key": p.mac_key_share()}
    out["triples"] = p.triples((inp["use"],))
    if isinstance(p, DealerFreePreprocessing):
        save(p, path, inp["key"])
    return out


def test_preprocessing_for_job_reuses_leftovers_once(tmp_path: Path, seed: bytes, prg: PRG) -> None:
    key = storage_key(prg)
    first = {"dir": str(tmp_path), "key": key, "triples": 10, "bits": 0, "use": 4}
    res1 = run_local(prog_job, [first, first], seeds=party_seeds(seed, 2))
    assert res1[0]["kind"] == "DealerFreePreprocessing" and res1[0]["remaining"] == {"triples": 10}
    second = {**first, "triples": 8, "bits": 2, "use": 8}  # 6 left over + 2 produced, bits fresh
    res2 = run_local(prog_job, [second, second], seeds=party_seeds(seed + b"2", 2))
    assert res2[0]["remaining"] == {"bits": 2, "triples": 8}
    assert [int(r["key"]) for r in res2] == [int(r["key"]) for r in res1]
    alpha = alpha_of(res1)
    old = set(int(v) for v in open_checked([r["triples"].a for r in res1], alpha))
    a, b, c = (open_checked([getattr(r["triples"], f) for r in res2], alpha) for f in "abc")
    assert all((int(x) * int(y) - int(z)) % M64 == 0 for x, y, z in zip(a, b, c))
    assert not old & set(int(v) for v in a)


async def prog_insecure(s: Session, inp: None) -> str:
    p = await preprocessing_for_job(s, Requirements(triples=3), insecure_dealer=True)
    with pytest.raises(PreprocessingExhausted):
        p.triples((4,))
    return type(p).__name__


def test_preprocessing_for_job_insecure_only_when_asked() -> None:
    assert run_local(prog_insecure, [None, None]) == ["InsecureDealer"] * 2


def test_storage_key_length(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        save(None, tmp_path / "x", b"short")  # type: ignore[arg-type]
    assert not os.listdir(tmp_path)
    assert np.uint64(0) == 0
