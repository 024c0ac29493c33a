"""Job specs, hashing and the policy check (pure, no network)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mpc.errors import ConfigError, PolicyRefused, ProtocolViolation
from parties.config import NodeConfig, PolicyConfig, load_federation
from parties.jobs import (
    JobSpec,
    check_policy,
    decode_column_sums,
    encode_column_sums,
    job_spec_from_dict,
    load_columns,
    new_job_id,
)
from parties.local import create_local_federation

NAMES = ("hospital-a", "hospital-b", "hospital-c")


@pytest.fixture
def fed_dir(tmp_path: Path) -> Path:
    for n in NAMES:
        (tmp_path / n).mkdir()
        (tmp_path / n / "data.csv").write_text("age,stay\n30,2\n40,3.5\n")
    create_local_federation(tmp_path, NAMES, ports=[7001, 7002, 7003], datasets={n: {"data": "data.csv"} for n in NAMES})
    return tmp_path


def spec(**changes: object) -> JobSpec:
    base = JobSpec(
        job_id=new_job_id(),
        kind="secure-sum",
        proposer="hospital-a",
        parties=NAMES,
        receivers=NAMES,
        params={"dataset": "data", "columns": ["age"], "scale_bits": 16},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def cfg(fed_dir: Path, name: str = "hospital-b") -> NodeConfig:
    from parties.config import load_node_config

    return load_node_config(fed_dir / name / "node.toml")


def test_allowed_job_passes(fed_dir: Path) -> None:
    check_policy(spec(), cfg(fed_dir), load_federation(fed_dir / "federation.toml"), sender="hospital-a")


@pytest.mark.parametrize(
    "changes,rule",
    [
        ({"kind": "train-everything"}, "unknown-job-kind"),
        ({"parties": ("hospital-a", "hospital-b", "mallory")}, "federation"),
        ({"parties": ("hospital-a", "hospital-c")}, "parties"),
        ({"parties": ("hospital-a", "hospital-a", "hospital-b")}, "parties"),
        ({"receivers": ("mallory",)}, "receivers"),
        ({"receivers": ()}, "receivers"),
        ({"params": {"dataset": "nope", "columns": ["age"], "scale_bits": 16}}, "datasets"),
        ({"params": {"dataset": "data", "columns": ["ssn"], "scale_bits": 16}}, "columns"),
        ({"params": {"dataset": "data", "columns": ["age"], "scale_bits": 99}}, "params"),
        ({"params": {"dataset": "data", "columns": [], "scale_bits": 16}}, "params"),
        ({"params": {"dataset": "data", "columns": ["age"]}}, "params"),
    ],
)
def test_refusals_name_the_rule(fed_dir: Path, changes: dict[str, object], rule: str) -> None:
    with pytest.raises(PolicyRefused) as info:
        check_policy(spec(**changes), cfg(fed_dir), load_federation(fed_dir / "federation.toml"), sender="hospital-a")
    assert info.value.rule == rule


def test_sender_must_be_proposer(fed_dir: Path) -> None:
    with pytest.raises(PolicyRefused) as info:
        check_policy(spec(), cfg(fed_dir), load_federation(fed_dir / "federation.toml"), sender="hospital-c")
    assert info.value.rule == "proposer-mismatch"


def test_policy_kind_and_peers(fed_dir: Path) -> None:
    fed = load_federation(fed_dir / "federation.toml")
    no_jobs = dataclasses.replace(cfg(fed_dir), policy=PolicyConfig(allowed_jobs=()))
    with pytest.raises(PolicyRefused) as info:
        check_policy(spec(), no_jobs, fed, sender="hospital-a")
    assert info.value.rule == "allowed_jobs"
    only_c = dataclasses.replace(cfg(fed_dir), policy=PolicyConfig(allowed_peers=("hospital-c",)))
    with pytest.raises(PolicyRefused) as info:
        check_policy(spec(), only_c, fed, sender="hospital-a")
    assert info.value.rule == "allowed_peers"


def test_digest_changes_with_any_field() -> None:
    s = spec()
    assert s.digest() == job_spec_from_dict(s.to_dict()).digest()
    assert s.digest() != dataclasses.replace(s, receivers=("hospital-a",)).digest()
    assert s.digest() != dataclasses.replace(s, params={**s.params, "scale_bits": 15}).digest()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("kind"),
        lambda d: d.update(job_id="../../etc"),
        lambda d: d.update(parties="hospital-a"),
        lambda d: d.update(params=[1]),
        lambda d: d.update(extra=1),
    ],
)
def test_malformed_spec_refused(mutate: object) -> None:
    d = spec().to_dict()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(ProtocolViolation):
        job_spec_from_dict(d)


def test_load_columns_and_fixed_point_sums(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("a,b,c\n1.5,2,x\n-2.25,4,y\n")
    data = load_columns(p, ["a", "b"])
    assert data.tolist() == [[1.5, 2.0], [-2.25, 4.0]]
    enc = encode_column_sums(data, 16)
    out = decode_column_sums(enc, ["a", "b"], 16)
    assert out["rows"] == 2 and out["sum"] == {"a": -0.75, "b": 6.0} and out["mean"]["b"] == 3.0
    with pytest.raises(ConfigError, match="non-numeric"):
        load_columns(p, ["c"])
    with pytest.raises(ConfigError):
        load_columns(p, ["zzz"])
    with pytest.raises(ConfigError):
        load_columns(tmp_path / "missing.csv", ["a"])
    with pytest.raises(ConfigError, match="too large"):
        encode_column_sums(np.array([[1e15]]), 30)
