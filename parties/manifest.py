"""Job manifests: what a job computes, among whom, on which data, and who receives what.

A manifest is a TOML (or JSON) file::

    kind = "secure-sum"
    name = "mean age and length of stay"     # free text, for people
    parties = ["hospital-a", "hospital-b", "hospital-c"]
    timeout = 600                            # seconds; the job fails everywhere after it

    [inputs.hospital-a]                      # per party: the local dataset and columns it reads
    dataset = "patients"
    columns = ["age", "length_of_stay"]
    [inputs.hospital-b]
    dataset = "admissions"
    columns = ["age", "los"]

    [outputs]                                # output name -> the parties that receive it
    result = ["hospital-a"]

    [roles]                                  # role -> party, for kinds that have roles
    # server = "hospital-a"

    [params]                                 # kind-specific parameters
    scale_bits = 16

    [dp]                                     # differential privacy, for kinds that add noise
    # epsilon = 1.0
    # delta = 1e-6

Every node that takes part recomputes the manifest's SHA-256 over its canonical JSON form; all
parties agree on it before the first protocol message (a manifest changed in flight is refused).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mpc.errors import ConfigError

__all__ = ["InputSpec", "DPSpec", "Manifest", "parse_manifest", "load_manifest", "MAX_TIMEOUT"]

_KEYS = {"kind", "name", "parties", "timeout", "inputs", "outputs", "roles", "params", "dp"}
DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 7 * 24 * 3600.0


@dataclass(frozen=True)
class InputSpec:
    """One party's input: a local dataset and the columns the job reads from it."""

    dataset: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class DPSpec:
    """The privacy cost a job declares (charged to each input dataset's budget)."""

    epsilon: float
    delta: float


@dataclass(frozen=True)
class Manifest:
    """A validated job manifest (see the module docstring)."""

    kind: str
    parties: tuple[str, ...]
    outputs: Mapping[str, tuple[str, ...]]
    inputs: Mapping[str, InputSpec] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    dp: DPSpec | None = None
    timeout: float = DEFAULT_TIMEOUT
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-compatible form (what is hashed and sent to peers)."""
        doc: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "parties": list(self.parties),
            "timeout": self.timeout,
            "inputs": {p: {"dataset": i.dataset, "columns": list(i.columns)} for p, i in self.inputs.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
            "roles": dict(self.roles),
            "params": dict(self.params),
        }
        if self.dp is not None:
            doc["dp"] = {"epsilon": self.dp.epsilon, "delta": self.dp.delta}
        return doc

    def digest(self) -> str:
        """SHA-256 of the canonical JSON encoding, hex."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    @property
    def receivers(self) -> tuple[str, ...]:
        """Every party that receives some output, in party order."""
        named = {r for rs in self.outputs.values() for r in rs}
        return tuple(p for p in self.parties if p in named)

    def outputs_for(self, party: str) -> tuple[str, ...]:
        """The outputs ``party`` receives."""
        return tuple(name for name, rs in self.outputs.items() if party in rs)


def _names(where: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"manifest {where}: expected a list of party names")
    if not value and not allow_empty:
        raise ConfigError(f"manifest {where}: must not be empty")
    if len(set(value)) != len(value):
        raise ConfigError(f"manifest {where}: names repeat")
    return tuple(value)


def parse_manifest(data: Any) -> Manifest:
    """Validate a manifest's structure (policy checks happen at each node).

    Raises:
        ConfigError: on any missing, unknown or malformed field.
    """
    if not isinstance(data, dict):
        raise ConfigError("manifest: expected a table")
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"manifest: unknown key(s) {', '.join(sorted(unknown))}")
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigError("manifest: 'kind' is required")
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise ConfigError("manifest: 'name' must be a string of at most 200 characters")
    parties = _names("parties", data.get("parties"))
    if len(parties) < 2:
        raise ConfigError("manifest: a job needs at least two parties")
    timeout = data.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
        raise ConfigError(f"manifest: 'timeout' must be in (0, {MAX_TIMEOUT:.0f}] seconds")

    inputs: dict[str, InputSpec] = {}
    raw_inputs = data.get("inputs", {})
    if not isinstance(raw_inputs, dict):
        raise ConfigError("manifest: [inputs] must be a table per party")
    for party, spec in raw_inputs.items():
        if party not in parties:
            raise ConfigError(f"manifest: inputs for {party!r}, which is not a party")
        if not isinstance(spec, dict) or set(spec) != {"dataset", "columns"}:
            raise ConfigError(f"manifest: [inputs.{party}] needs exactly 'dataset' and 'columns'")
        ds, cols = spec["dataset"], spec["columns"]
        if not isinstance(ds, str) or not ds:
            raise ConfigError(f"manifest: [inputs.{party}].dataset must be a name")
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
            raise ConfigError(f"manifest: [inputs.{party}].columns must be a non-empty list of names")
        if len(set(cols)) != len(cols):
            raise ConfigError(f"manifest: [inputs.{party}].columns repeat")
        inputs[party] = InputSpec(ds, tuple(cols))

    raw_outputs = data.get("outputs")
    if not isinstance(raw_outputs, dict) or not raw_outputs:
        raise ConfigError("manifest: [outputs] must name each output's receivers")
    outputs: dict[str, tuple[str, ...]] = {}
    for out_name, receivers in raw_outputs.items():
        names = _names(f"outputs.{out_name}", receivers)
        for r in names:
            if r not in parties:
                raise ConfigError(f"manifest: receiver {r!r} of output {out_name!r} is not a party")
        outputs[out_name] = names

    roles = data.get("roles", {})
    if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
        raise ConfigError("manifest: [roles] maps role names to party names")
    for role, party in roles.items():
        if party not in parties:
            raise ConfigError(f"manifest: role {role!r} given to {party!r}, which is not a party")

    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError("manifest: [params] must be a table")
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError("manifest: [params] must hold only JSON-compatible, finite values") from None

    dp = None
    if "dp" in data:
        raw_dp = data["dp"]
        if not isinstance(raw_dp, dict) or set(raw_dp) != {"epsilon", "delta"}:
            raise ConfigError("manifest: [dp] needs exactly 'epsilon' and 'delta'")
        eps, delta = raw_dp["epsilon"], raw_dp["delta"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (eps, delta)):
            raise ConfigError("manifest: [dp] values must be numbers")
        if not (0 < eps < math.inf and 0 <= delta < 1):
            raise ConfigError("manifest: [dp] needs 0 < epsilon and 0 <= delta < 1")
        dp = DPSpec(float(eps), float(delta))
    return Manifest(kind, parties, outputs, inputs, dict(roles), dict(params), dp, float(timeout), name)


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest from a ``.toml`` or ``.json`` file.

    Raises:
        ConfigError: unreadable file or invalid manifest.
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"manifest {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    return parse_manifest(data)
