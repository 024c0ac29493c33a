"""Node configuration and federation files (TOML), parsed and validated up front.

A node directory made by ``mpc-party init`` holds::

    node.toml        this file's NodeConfig (paths relative to the directory)
    NAME.key         the party's private key (mode 0600)
    NAME.crt         its self-signed certificate
    federation.toml  every party's name, address, certificate and pinned fingerprint

``node.toml``::

    [node]
    name = "hospital-a"
    listen = "127.0.0.1:7001"      # host:port this node serves its peers on
    key = "hospital-a.key"
    certificate = "hospital-a.crt"
    federation = "federation.toml"
    state_dir = "state"            # control socket, results, logs
    recv_timeout = 30.0            # seconds a peer may stay silent before PeerUnavailable
    connect_timeout = 30.0
    offload_compute = true         # large local computations in a worker thread (default: true
                                   # with 2+ cores; false when nodes share a machine's cores)

    [policy]
    allowed_jobs = ["secure-sum"]  # job kinds this node takes part in
    allowed_peers = []             # federation members it computes with; empty = all of them
    allowed_receivers = []         # who may receive outputs of jobs on our data; empty = any party
    min_group_size = 10            # statistics over fewer local rows are refused
    max_job_timeout = 86400
    max_concurrent_jobs = 8
    [policy.roles]                 # role -> parties that may take it (unlisted roles: anyone)
    server = ["hospital-a"]
    [policy.budgets.patients]      # total privacy budget of a dataset for DP jobs
    epsilon = 3.0
    delta = 1e-5

    [datasets.patients]            # local data that jobs may read by name (parties.datasets)
    path = "patients.csv"
    id_column = "patient_id"
    [datasets.patients.columns]
    patient_id = "string"
    age = "float"

``federation.toml``::

    [[party]]
    name = "hospital-a"
    address = "127.0.0.1:7001"
    fingerprint = "3f5a...e1"      # SHA-256 of the certificate (DER), hex
    certificate = '''
    -----BEGIN CERTIFICATE-----
    ...
    -----END CERTIFICATE-----
    '''

The certificate is public; operators exchange their ``[[party]]`` entries (``mpc-party
fingerprint --toml``) and confirm each fingerprint out of band (phone, signed email) before adding
it, as with SSH host keys. A certificate that does not hash to its pinned fingerprint is refused
when the file is loaded.
"""

from __future__ import annotations

import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from mpc.checks import check_int
from mpc.errors import ConfigError
from parties.aio import offload_default
from parties.datasets import DatasetConfig, parse_dataset
from parties.jobs import JOB_KINDS
from transport.identity import Federation, PeerInfo

__all__ = [
    "BudgetConfig",
    "DatasetConfig",
    "NodeConfig",
    "PolicyConfig",
    "load_federation",
    "dump_federation",
    "party_entry",
    "load_node_config",
    "write_node_config",
    "parse_address",
]

_NODE_KEYS = {
    "name",
    "listen",
    "key",
    "certificate",
    "federation",
    "state_dir",
    "recv_timeout",
    "connect_timeout",
    "offload_compute",
}
_POLICY_KEYS = {
    "allowed_jobs",
    "allowed_peers",
    "allowed_receivers",
    "roles",
    "min_group_size",
    "max_job_timeout",
    "max_concurrent_jobs",
    "budgets",
    "allow_insecure_dealer",
}
KNOWN_JOB_KINDS: tuple[str, ...] = tuple(JOB_KINDS)


def parse_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6).

    Raises:
        ConfigError: if the text is not a valid address.
    """
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.\-]+):(\d{1,5})", text or "")
    if not m:
        raise ConfigError(f"invalid address {text!r}: expected HOST:PORT")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 1 <= port <= 65535:
        raise ConfigError(f"invalid port in address {text!r}")
    return host, port


@dataclass(frozen=True)
class PolicyConfig:
    """What this node agrees to compute, with whom, and who may receive results.

    Attributes:
        allowed_jobs: job kinds the node takes part in.
        allowed_peers: federation members it computes with (empty = all members).
        allowed_receivers: parties that may receive outputs of jobs this node takes part in
            (empty = any party of the job).
        roles: role name -> parties allowed to take it (a role not listed may go to any party).
        min_group_size: statistics jobs refuse to run on fewer local rows than this.
        max_job_timeout: the longest job timeout (seconds) the node accepts.
        max_concurrent_jobs: jobs running at once; more are refused.
        allow_insecure_dealer: whether SPDZ jobs may ask for the insecure test dealer instead of
            dealer-free preprocessing (never in a real deployment).
    """

    allowed_jobs: tuple[str, ...] = KNOWN_JOB_KINDS
    allowed_peers: tuple[str, ...] = ()
    allowed_receivers: tuple[str, ...] = ()
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    min_group_size: int = 1
    max_job_timeout: float = 24 * 3600.0
    max_concurrent_jobs: int = 8
    allow_insecure_dealer: bool = False


@dataclass(frozen=True)
class BudgetConfig:
    """A dataset's total privacy budget (None = no DP jobs may use it)."""

    epsilon: float
    delta: float


@dataclass(frozen=True)
class NodeConfig:
    """A validated node configuration (all paths absolute)."""

    name: str
    host: str
    port: int
    key_path: Path
    cert_path: Path
    federation_path: Path
    state_dir: Path
    recv_timeout: float = 30.0
    connect_timeout: float = 30.0
    offload_compute: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    budgets: dict[str, BudgetConfig] = field(default_factory=dict)
    config_path: Path | None = None

    @property
    def control_socket(self) -> Path:
        """Path of the node's local control socket (never exposed to peers)."""
        return self.state_dir / "control.sock"

    @property
    def storage_key_path(self) -> Path:
        """The node's 32-byte key encrypting persisted preprocessing (made at first start, 0600)."""
        return self.state_dir / "storage.key"

    @property
    def database(self) -> Path:
        """The node's SQLite database (audit log and privacy-budget ledger)."""
        return self.state_dir / "node.db"

    @property
    def results_dir(self) -> Path:
        """Where job results released to this node are written."""
        return self.state_dir / "results"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _check_keys(where: str, table: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    missing = required - set(table)
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    return table


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string")
    return value


def _positive(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number")
    return float(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false")
    return value


def _str_list(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(value)


def load_federation(path: str | Path) -> Federation:
    """Load and validate a federation file.

    Raises:
        ConfigError: on any missing, unknown or invalid key, or duplicate names/fingerprints.
    """
    path = Path(path)
    data = _read_toml(path)
    _check_keys(str(path), data, {"party"}, {"party"})
    entries = data["party"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected one or more [[party]] tables")
    parties = []
    for i, entry in enumerate(entries):
        where = f"{path}: party #{i + 1}"
        keys = {"name", "address", "fingerprint", "certificate"}
        _check_keys(where, entry, keys, keys)
        host, port = parse_address(_str(f"{where}.address", entry["address"]))
        parties.append(
            PeerInfo(
                name=_str(f"{where}.name", entry["name"]),
                host=host,
                port=port,
                fingerprint=_str(f"{where}.fingerprint", entry["fingerprint"]),
                certificate=_str(f"{where}.certificate", entry["certificate"]).encode(),
            )
        )
    return Federation(tuple(parties))


def dump_federation(federation: Federation, path: str | Path) -> None:
    """Write a federation file."""
    Path(path).write_text(tomli_w.dumps({"party": [party_entry(p) for p in federation.parties]}, multiline_strings=True))


def party_entry(peer: PeerInfo) -> dict[str, str]:
    """The ``[[party]]`` table of one member (certificate as PEM text)."""
    return {
        "name": peer.name,
        "address": _format_address(peer.host, peer.port),
        "fingerprint": peer.fingerprint,
        "certificate": ssl.DER_cert_to_PEM_cert(peer.certificate_der()),
    }


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load_node_config(path: str | Path) -> NodeConfig:
    """Load and validate ``node.toml``; relative paths are resolved against its directory.

    Raises:
        ConfigError: on any missing, unknown or invalid key.
    """
    path = Path(path).resolve()
    base = path.parent
    data = _read_toml(path)
    _check_keys(str(path), data, {"node", "policy", "datasets"}, {"node"})
    node = _check_keys(f"{path}: [node]", data["node"], _NODE_KEYS, {"name", "listen", "key", "certificate", "federation"})
    host, port = parse_address(_str("[node].listen", node["listen"]))

    policy_t = _check_keys(f"{path}: [policy]", data.get("policy", {}), _POLICY_KEYS, set())
    allowed_jobs = _str_list("[policy].allowed_jobs", policy_t.get("allowed_jobs", list(KNOWN_JOB_KINDS)))
    for kind in allowed_jobs:
        if kind not in KNOWN_JOB_KINDS:
            raise ConfigError(f"[policy].allowed_jobs: unknown job kind {kind!r}")
    roles_t = policy_t.get("roles", {})
    if not isinstance(roles_t, dict):
        raise ConfigError("[policy].roles: expected a table role = [parties]")
    min_group = policy_t.get("min_group_size", 1)
    check_int(min_group, "min_group_size", lo=1, message="[policy].min_group_size: expected a positive integer")
    max_jobs = policy_t.get("max_concurrent_jobs", 8)
    check_int(max_jobs, "max_concurrent_jobs", lo=1, message="[policy].max_concurrent_jobs: expected a positive integer")
    policy = PolicyConfig(
        allowed_jobs=allowed_jobs,
        allowed_peers=_str_list("[policy].allowed_peers", policy_t.get("allowed_peers", [])),
        allowed_receivers=_str_list("[policy].allowed_receivers", policy_t.get("allowed_receivers", [])),
        roles={role: _str_list(f"[policy].roles.{role}", who) for role, who in roles_t.items()},
        min_group_size=min_group,
        max_job_timeout=_positive("[policy].max_job_timeout", policy_t.get("max_job_timeout", 24 * 3600.0)),
        max_concurrent_jobs=max_jobs,
        allow_insecure_dealer=_bool("[policy].allow_insecure_dealer", policy_t.get("allow_insecure_dealer", False)),
    )

    ds_table = data.get("datasets", {})
    if not isinstance(ds_table, dict):
        raise ConfigError(f"{path}: [datasets] must be a table of tables")
    datasets = {ds_name: parse_dataset(ds_name, ds, base) for ds_name, ds in ds_table.items()}
    budgets: dict[str, BudgetConfig] = {}
    budgets_t = policy_t.get("budgets", {})
    if not isinstance(budgets_t, dict):
        raise ConfigError("[policy].budgets: expected a table dataset = {epsilon, delta}")
    for ds_name, b in budgets_t.items():
        if ds_name not in datasets:
            raise ConfigError(f"[policy].budgets.{ds_name}: no such dataset")
        _check_keys(f"[policy].budgets.{ds_name}", b, {"epsilon", "delta"}, {"epsilon", "delta"})
        delta = b["delta"]
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 <= delta < 1:
            raise ConfigError(f"[policy].budgets.{ds_name}.delta: expected a number in [0, 1)")
        budgets[ds_name] = BudgetConfig(_positive(f"[policy].budgets.{ds_name}.epsilon", b["epsilon"]), float(delta))

    return NodeConfig(
        name=_str("[node].name", node["name"]),
        host=host,
        port=port,
        key_path=(base / _str("[node].key", node["key"])).resolve(),
        cert_path=(base / _str("[node].certificate", node["certificate"])).resolve(),
        federation_path=(base / _str("[node].federation", node["federation"])).resolve(),
        state_dir=(base / str(node.get("state_dir", "state"))).resolve(),
        recv_timeout=_positive("[node].recv_timeout", node.get("recv_timeout", 30.0)),
        connect_timeout=_positive("[node].connect_timeout", node.get("connect_timeout", 30.0)),
        offload_compute=_bool("[node].offload_compute", node.get("offload_compute", offload_default())),
        policy=policy,
        datasets=datasets,
        budgets=budgets,
        config_path=path,
    )


def write_node_config(
    directory: Path,
    *,
    name: str,
    listen: str,
    federation: str = "federation.toml",
    recv_timeout: float = 30.0,
    datasets: dict[str, dict[str, Any]] | None = None,
    policy: dict[str, Any] | None = None,
    key: str | None = None,
    certificate: str | None = None,
    offload_compute: bool | None = None,
) -> Path:
    """Write ``node.toml`` in ``directory`` (as ``mpc-party init`` does); returns its path.

    ``offload_compute`` is written only if given (else the node decides from its cores).
    """
    parse_address(listen)
    doc: dict[str, Any] = {
        "node": {
            "name": name,
            "listen": listen,
            "key": key or f"{name}.key",
            "certificate": certificate or f"{name}.crt",
            "federation": federation,
            "state_dir": "state",
            "recv_timeout": recv_timeout,
            "connect_timeout": 30.0,
        },
        "policy": policy if policy is not None else {"allowed_jobs": list(KNOWN_JOB_KINDS), "allowed_peers": []},
    }
    if offload_compute is not None:
        doc["node"]["offload_compute"] = bool(offload_compute)
    if datasets:
        doc["datasets"] = datasets
    out = directory / "node.toml"
    out.write_text(tomli_w.dumps(doc))
    return out
