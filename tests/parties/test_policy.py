"""Manifests, datasets and each node's policy check (pure, no network)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc.errors import BudgetExceeded, ConfigError, PolicyRefused
from parties.config import NodeConfig, PolicyConfig, load_federation, load_node_config
from parties.datasets import read_columns
from parties.jobs import decode_column_sums, encode_column_sums
from parties.local import create_local_federation
from parties.manifest import load_manifest, parse_manifest
from parties.policy import check_manifest

NAMES = ("hospital-a", "hospital-b", "hospital-c")
DATASET = {
    "path": "data.csv",
    "id_column": "pid",
    "columns": {"pid": "string", "age": "float", "stay": "float", "secret": "float"},
    "allowed_columns": ["pid", "age", "stay"],
}


@pytest.fixture
def fed_dir(tmp_path: Path) -> Path:
    for n in NAMES:
        (tmp_path / n).mkdir()
        (tmp_path / n / "data.csv").write_text("pid,age,stay,secret\nx1,30,2,1\nx2,40,3.5,2\nx3,50,1,3\n")
    create_local_federation(
        tmp_path,
        NAMES,
        ports=[7001, 7002, 7003],
        datasets={n: {"data": DATASET} for n in NAMES},
        policies={n: {"allowed_jobs": ["secure-sum"], "min_group_size": 2} for n in NAMES},
    )
    return tmp_path


BASE: dict[str, Any] = {
    "kind": "secure-sum",
    "parties": list(NAMES),
    "inputs": {n: {"dataset": "data", "columns": ["age"]} for n in NAMES},
    "outputs": {"result": list(NAMES)},
    "params": {"scale_bits": 16},
}


def manifest(**changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(BASE)
    m.update(changes)
    return m


def cfg(fed_dir: Path, name: str = "hospital-b") -> NodeConfig:
    return load_node_config(fed_dir / name / "node.toml")


def check(fed_dir: Path, m: dict[str, Any], *, config: NodeConfig | None = None, sender: str | None = "hospital-a", proposer: str = "hospital-a") -> None:
    c = config or cfg(fed_dir)
    check_manifest(
        parse_manifest(m),
        c,
        load_federation(fed_dir / "federation.toml"),
        proposer=proposer,
        sender=sender,
        count_rows=lambda ds: len(read_columns(c.datasets[ds], ["age"])["age"]),
    )


def test_allowed_job_passes(fed_dir: Path) -> None:
    check(fed_dir, manifest())


def test_manifest_round_trip_and_hash(tmp_path: Path) -> None:
    m = parse_manifest(manifest())
    assert parse_manifest(m.to_dict()) == m and parse_manifest(m.to_dict()).digest() == m.digest()
    assert m.digest() != parse_manifest(manifest(outputs={"result": ["hospital-a"]})).digest()
    assert m.receivers == NAMES and m.outputs_for("hospital-a") == ("result",)
    import tomli_w

    path = tmp_path / "job.toml"
    path.write_text(tomli_w.dumps(manifest()))
    assert load_manifest(path).digest() == m.digest()


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"kind": ""}, "kind"),
        ({"parties": ["hospital-a"]}, "at least two"),
        ({"parties": ["hospital-a", "hospital-a"]}, "repeat"),
        ({"outputs": {}}, "outputs"),
        ({"outputs": {"result": ["mallory"]}}, "not a party"),
        ({"inputs": {"mallory": {"dataset": "d", "columns": ["x"]}}}, "not a party"),
        ({"inputs": {"hospital-a": {"dataset": "d"}}}, "dataset"),
        ({"timeout": -1}, "timeout"),
        ({"dp": {"epsilon": 0, "delta": 0}}, "epsilon"),
        ({"params": {"x": float("nan")}}, "finite"),
        ({"colour": "red"}, "unknown key"),
        ({"roles": {"server": "mallory"}}, "not a party"),
    ],
)
def test_malformed_manifests(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_manifest(manifest(**changes))


@pytest.mark.parametrize(
    "changes,rule",
    [
        ({"kind": "train-everything"}, "unknown-job-kind"),
        ({"parties": ["hospital-a", "hospital-b", "mallory"], "inputs": {n: {"dataset": "data", "columns": ["age"]} for n in ("hospital-a", "hospital-b", "mallory")}, "outputs": {"result": ["hospital-a"]}}, "federation"),
        ({"parties": ["hospital-a", "hospital-c"], "inputs": {n: {"dataset": "data", "columns": ["age"]} for n in ("hospital-a", "hospital-c")}, "outputs": {"result": ["hospital-a"]}}, "federation"),
        ({"inputs": {**BASE["inputs"], "hospital-b": {"dataset": "nope", "columns": ["age"]}}}, "datasets"),
        ({"inputs": {**BASE["inputs"], "hospital-b": {"dataset": "data", "columns": ["secret"]}}}, "columns"),
        ({"inputs": {**BASE["inputs"], "hospital-b": {"dataset": "data", "columns": ["ssn"]}}}, "columns"),
        ({"inputs": {"hospital-a": BASE["inputs"]["hospital-a"]}}, "params"),
        ({"outputs": {"other": ["hospital-a"]}}, "params"),
        ({"params": {"scale_bits": 99}}, "params"),
        ({"params": {"rounds": 3}}, "params"),
        ({"inputs": {**BASE["inputs"], "hospital-b": {"dataset": "data", "columns": ["age", "stay"]}}}, "params"),
        ({"roles": {"server": "hospital-a"}}, "roles"),
        ({"timeout": 2 * 24 * 3600.0}, "timeout"),
    ],
)
def test_refusals_name_the_rule(fed_dir: Path, changes: dict[str, Any], rule: str) -> None:
    with pytest.raises(PolicyRefused) as info:
        check(fed_dir, manifest(**changes))
    assert info.value.rule == rule


def test_sender_must_be_proposer(fed_dir: Path) -> None:
    with pytest.raises(PolicyRefused) as info:
        check(fed_dir, manifest(), sender="hospital-c")
    assert info.value.rule == "proposer-mismatch"


def test_policy_kind_peers_receivers_and_group_size(fed_dir: Path) -> None:
    base = cfg(fed_dir)
    cases = [
        (PolicyConfig(allowed_jobs=()), "allowed_jobs"),
        (PolicyConfig(allowed_peers=("hospital-c",)), "allowed_peers"),
        (PolicyConfig(allowed_receivers=("hospital-a", "hospital-b")), "receivers"),
        (PolicyConfig(min_group_size=4), "min_group_size"),
        (PolicyConfig(max_job_timeout=60.0), "timeout"),
    ]
    for policy, rule in cases:
        with pytest.raises(PolicyRefused) as info:
            check(fed_dir, manifest(), config=dataclasses.replace(base, policy=policy))
        assert info.value.rule == rule
    check(fed_dir, manifest(), config=dataclasses.replace(base, policy=PolicyConfig(min_group_size=3)))


def test_budget_callback_refuses(fed_dir: Path) -> None:
    # secure-sum spends no privacy budget, so the DP rules do not apply to it.
    def broke(ds: str, eps: float, delta: float) -> None:
        raise BudgetExceeded("over", rule="budget-exceeded")

    c = cfg(fed_dir)
    check_manifest(parse_manifest(manifest()), c, load_federation(fed_dir / "federation.toml"), proposer="hospital-a", sender="hospital-a", check_budget=broke)


def test_datasets_read_declared_types_only(fed_dir: Path, tmp_path: Path) -> None:
    c = cfg(fed_dir)
    cols = read_columns(c.datasets["data"], ["pid", "age"])
    assert cols["pid"] == ["x1", "x2", "x3"] and cols["age"].tolist() == [30.0, 40.0, 50.0]
    with pytest.raises(ConfigError, match="not allowed"):
        read_columns(c.datasets["data"], ["secret"])
    with pytest.raises(ConfigError, match="no declared column"):
        read_columns(c.datasets["data"], ["nope"])
    (fed_dir / "hospital-b" / "data.csv").write_text("pid,age,stay,secret\nx1,thirty,2,1\n")
    with pytest.raises(ConfigError, match="not of type float"):
        read_columns(c.datasets["data"], ["age"])


def test_parquet_dataset(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from parties.datasets import parse_dataset

    pq.write_table(pa.table({"pid": ["a", "b"], "age": [1.5, 2.5]}), tmp_path / "d.parquet")
    ds = parse_dataset("d", {"path": "d.parquet", "columns": {"pid": "string", "age": "float"}}, tmp_path)
    assert ds.format == "parquet"
    cols = read_columns(ds, ["age", "pid"])
    assert cols["age"].tolist() == [1.5, 2.5] and cols["pid"] == ["a", "b"]


def test_fixed_point_column_sums() -> None:
    data = np.array([[1.5, 2.0], [-2.25, 4.0]])
    out = decode_column_sums(encode_column_sums(data, 16), ["a", "b"], 16)
    assert out["rows"] == 2 and out["sum"] == {"a": -0.75, "b": 6.0} and out["mean"]["b"] == 3.0
    with pytest.raises(ConfigError, match="too large"):
        encode_column_sums(np.array([[1e15]]), 30)
