"""Job specifications, the policy check each node applies, and the built-in job programs.

A job is agreed by every participating node before the first protocol message: the proposer
sends the spec and its SHA-256 hash, each node recomputes the hash (a spec changed in flight is
refused), checks it against its own policy and datasets, and only then opens the job's session.

Built-in jobs (this module grows with the issues):

``secure-sum``
    Each party reads the named numeric columns of its local dataset, sums them locally (fixed
    point, ``scale_bits`` fractional bits) and appends its row count; the parties run the
    additive-sharing secure sum (``protocols.secure_sum``) and only the receivers learn the
    column totals, the total row count and the means. What leaks: exactly those aggregates.
    Threat model: that of ``protocols.secure_sum`` (semi-honest; n-1 colluders learn nothing more).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpc.errors import ConfigError, PolicyRefused, ProtocolViolation
from mpc.ring import decode_int, encode_int
from mpc.session import Session
from parties.config import KNOWN_JOB_KINDS, NodeConfig
from protocols.secure_sum import secure_sum_to
from transport.identity import Federation

__all__ = ["JobSpec", "check_policy", "new_job_id", "run_job", "load_columns", "job_spec_from_dict"]

_JOB_ID = re.compile(r"[0-9a-f]{32}")
MAX_SCALE_BITS = 30
MAX_ROWS = 50_000_000


@dataclass(frozen=True)
class JobSpec:
    """What a job computes, among whom, and who receives the output.

    Attributes:
        job_id: 32 hex chars, unique per job (also the session id).
        kind: job kind (e.g. ``"secure-sum"``).
        proposer: the party that proposed the job.
        parties: the participating parties (names); order defines party ids.
        receivers: the parties that receive the output.
        params: kind-specific parameters (JSON-compatible).
    """

    job_id: str
    kind: str
    proposer: str
    parties: tuple[str, ...]
    receivers: tuple[str, ...]
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (the canonical form that is hashed)."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "proposer": self.proposer,
            "parties": list(self.parties),
            "receivers": list(self.receivers),
            "params": self.params,
        }

    def digest(self) -> str:
        """SHA-256 of the canonical JSON encoding, hex."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canon.encode()).hexdigest()


def new_job_id() -> str:
    """A fresh random job id (128 bits from the OS CSPRNG)."""
    return os.urandom(16).hex()


def job_spec_from_dict(data: Any) -> JobSpec:
    """Validate a job spec received from a peer or the CLI.

    Raises:
        ProtocolViolation: the spec is malformed.
    """
    if not isinstance(data, dict) or set(data) != {"job_id", "kind", "proposer", "parties", "receivers", "params"}:
        raise ProtocolViolation("malformed job spec")
    job_id, kind, proposer = data["job_id"], data["kind"], data["proposer"]
    parties, receivers, params = data["parties"], data["receivers"], data["params"]
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ProtocolViolation("malformed job id")
    if not isinstance(kind, str) or not isinstance(proposer, str) or not isinstance(params, dict):
        raise ProtocolViolation("malformed job spec")
    for group in (parties, receivers):
        if not isinstance(group, list) or not all(isinstance(p, str) for p in group):
            raise ProtocolViolation("malformed party list")
    return JobSpec(job_id, kind, proposer, tuple(parties), tuple(receivers), params)


def check_policy(spec: JobSpec, config: NodeConfig, federation: Federation, *, sender: str | None) -> None:
    """Check a job against this node's policy and data; raise naming the refusing rule.

    Args:
        spec: the proposed job.
        config: this node's configuration.
        federation: the pinned federation.
        sender: the authenticated peer that sent the proposal (``None`` for a local submission).

    Raises:
        PolicyRefused: with ``rule`` naming the rule that refused.
    """
    me = config.name
    if sender is not None and sender != spec.proposer:
        raise PolicyRefused(f"proposal from {sender} claims proposer {spec.proposer}", rule="proposer-mismatch")
    if spec.kind not in KNOWN_JOB_KINDS:
        raise PolicyRefused(f"unknown job kind {spec.kind!r}", rule="unknown-job-kind")
    if spec.kind not in config.policy.allowed_jobs:
        raise PolicyRefused(f"job kind {spec.kind!r} not allowed by policy", rule="allowed_jobs")
    if len(spec.parties) < 2 or len(set(spec.parties)) != len(spec.parties):
        raise PolicyRefused("a job needs two or more distinct parties", rule="parties")
    if me not in spec.parties or spec.proposer not in spec.parties:
        raise PolicyRefused("this node or the proposer is not a party of the job", rule="parties")
    for p in spec.parties:
        if p not in federation:
            raise PolicyRefused(f"party {p!r} is not in the federation", rule="federation")
        if p != me and config.policy.allowed_peers and p not in config.policy.allowed_peers:
            raise PolicyRefused(f"peer {p!r} not allowed by policy", rule="allowed_peers")
    if not spec.receivers or not set(spec.receivers) <= set(spec.parties):
        raise PolicyRefused("receivers must be parties of the job", rule="receivers")
    if spec.kind == "secure-sum":
        _check_sum_params(spec.params, config)


def _check_sum_params(params: dict[str, Any], config: NodeConfig) -> None:
    if set(params) != {"dataset", "columns", "scale_bits"}:
        raise PolicyRefused("secure-sum needs exactly dataset, columns, scale_bits", rule="params")
    dataset, columns, scale_bits = params["dataset"], params["columns"], params["scale_bits"]
    if not isinstance(scale_bits, int) or not 0 <= scale_bits <= MAX_SCALE_BITS:
        raise PolicyRefused(f"scale_bits must be in [0, {MAX_SCALE_BITS}]", rule="params")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise PolicyRefused("columns must be a non-empty list of names", rule="params")
    if not isinstance(dataset, str) or dataset not in config.datasets:
        raise PolicyRefused(f"unknown dataset {dataset!r}", rule="datasets")
    header = _read_header(config.datasets[dataset].path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise PolicyRefused(f"dataset {dataset!r} has no column(s) {', '.join(missing)}", rule="columns")


def _read_header(path: os.PathLike[str]) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read dataset {path}: {exc}") from None


def load_columns(path: os.PathLike[str], columns: list[str]) -> np.ndarray:
    """Read numeric ``columns`` of a CSV file with a header row into a float64 array (rows, cols).

    Raises:
        ConfigError: unreadable file, missing column, non-numeric or non-finite value.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"dataset {path} is empty")
            try:
                idx = [header.index(c) for c in columns]
            except ValueError:
                raise ConfigError(f"dataset {path} lacks a requested column") from None
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if len(rows) >= MAX_ROWS:
                    raise ConfigError(f"dataset {path} has more than {MAX_ROWS} rows")
                try:
                    rows.append([float(row[i]) for i in idx])
                except (ValueError, IndexError):
                    raise ConfigError(f"dataset {path} line {lineno}: non-numeric or missing value") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read dataset {path}: {exc}") from None
    data = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    if not np.all(np.isfinite(data)):
        raise ConfigError(f"dataset {path} has non-finite values")
    return data


def encode_column_sums(data: np.ndarray, scale_bits: int) -> np.ndarray:
    """Local contribution of a party to secure-sum: fixed-point column sums, then the row count.

    Raises:
        ConfigError: if a sum does not fit the signed 64-bit range at this scale.
    """
    sums = data.sum(axis=0) * float(1 << scale_bits)
    if np.any(np.abs(sums) >= 2.0**62):
        raise ConfigError("column sums too large for the fixed-point range; lower scale_bits")
    fixed = np.rint(sums).astype(np.int64)
    return encode_int(np.concatenate([fixed, np.array([data.shape[0]], dtype=np.int64)]))


def decode_column_sums(total: np.ndarray, columns: list[str], scale_bits: int) -> dict[str, Any]:
    """Turn the revealed ring vector back into totals, row count and means."""
    ints = decode_int(total)
    count = int(ints[-1])
    sums = ints[:-1].astype(np.float64) / float(1 << scale_bits)
    return {
        "rows": count,
        "sum": {c: float(s) for c, s in zip(columns, sums)},
        "mean": {c: (float(s) / count if count else None) for c, s in zip(columns, sums)},
    }


async def run_job(session: Session, spec: JobSpec, config: NodeConfig) -> dict[str, Any] | None:
    """Run a job's protocol on this node; returns the output if this node is a receiver.

    Raises:
        ConfigError: unknown job kind or unreadable local data.
    """
    if spec.kind == "secure-sum":
        params = spec.params
        data = load_columns(config.datasets[params["dataset"]].path, params["columns"])
        contribution = encode_column_sums(data, params["scale_bits"])
        receivers = [spec.parties.index(r) for r in spec.receivers]
        total = await secure_sum_to(session, contribution, receivers)
        if total is None:
            return None
        return decode_column_sums(total, params["columns"], params["scale_bits"])
    raise ConfigError(f"unknown job kind {spec.kind!r}")
