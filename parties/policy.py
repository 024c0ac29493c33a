"""A node's policy check of a proposed job: every rule, and the name of the one that refuses.

Each node checks every manifest it is asked to take part in against its own configuration,
before the job's session is opened; a refusal raises :class:`~mpc.errors.PolicyRefused` whose
``rule`` names the rule (sent to the proposer, logged and audited locally).

Rules, in the order they are checked:

==================  ==========================================================================
unknown-job-kind    the kind is not a built-in job kind
allowed_jobs        the kind is not in ``[policy].allowed_jobs``
params              the kind's parameters, inputs or outputs are malformed
federation          a party is not a federation member
proposer-mismatch   the proposal came from a peer other than the manifest's proposer
allowed_peers       a party is not in ``[policy].allowed_peers``
roles               a role the kind needs is missing, or goes to a party the policy forbids
receivers           an output's receivers are not exactly named, or a receiver is forbidden by
                    ``[policy].allowed_receivers``
insecure-dealer     the job asks for the insecure test dealer and ``allow_insecure_dealer`` is off
timeout             the job's timeout exceeds ``[policy].max_job_timeout``
datasets            this node's input names an unknown dataset
columns             this node's input names a column that is undeclared or not allowed
min_group_size      a statistics job on fewer local rows than ``[policy].min_group_size``
dp                  a DP job without a ``[dp]`` table, or a dataset without a budget
budget-exceeded     the job would overspend a dataset's privacy budget (BudgetExceeded)
==================  ==========================================================================
"""

from __future__ import annotations

from typing import Any, Callable

from mpc.errors import ConfigError, PolicyRefused
from parties.config import NodeConfig
from parties.jobs import JobKind, get_kind
from parties.manifest import Manifest
from transport.identity import Federation

__all__ = ["check_manifest"]


def check_manifest(
    manifest: Manifest,
    config: NodeConfig,
    federation: Federation,
    *,
    proposer: str,
    sender: str | None,
    count_rows: Callable[[str], int] | None = None,
    check_budget: Callable[[str, float, float], None] | None = None,
) -> JobKind:
    """Check ``manifest`` against this node's policy; return the job kind if allowed.

    Args:
        manifest: the proposed job.
        config: this node's configuration.
        federation: the pinned federation.
        proposer: the party named as proposer.
        sender: the authenticated peer the proposal came from (``None`` for a local submission).
        count_rows: dataset name -> local row count (for ``min_group_size``).
        check_budget: raises BudgetExceeded if (dataset, epsilon, delta) would overspend.

    Raises:
        PolicyRefused: naming the rule that refused.
    """
    me, policy = config.name, config.policy
    kind = get_kind(manifest.kind)
    if kind is None:
        raise PolicyRefused(f"unknown job kind {manifest.kind!r}", rule="unknown-job-kind")
    if kind.name not in policy.allowed_jobs:
        raise PolicyRefused(f"job kind {kind.name!r} is not allowed by this node's policy", rule="allowed_jobs")
    _check_shape(kind, manifest)
    for p in manifest.parties:
        if p not in federation:
            raise PolicyRefused(f"party {p!r} is not in the federation", rule="federation")
    if me not in manifest.parties or proposer not in manifest.parties:
        raise PolicyRefused("this node or the proposer is not a party of the job", rule="federation")
    if sender is not None and sender != proposer:
        raise PolicyRefused(f"proposal from {sender} names {proposer} as proposer", rule="proposer-mismatch")
    for p in manifest.parties:
        if p != me and policy.allowed_peers and p not in policy.allowed_peers:
            raise PolicyRefused(f"peer {p!r} is not allowed by this node's policy", rule="allowed_peers")
    for role in kind.roles:
        who = manifest.roles.get(role)
        if who is None:
            raise PolicyRefused(f"job kind {kind.name!r} needs role {role!r}", rule="roles")
        allowed = policy.roles.get(role)
        if allowed is not None and who not in allowed:
            raise PolicyRefused(f"{who!r} may not take role {role!r} under this node's policy", rule="roles")
    for out, receivers in manifest.outputs.items():
        for r in receivers:
            if policy.allowed_receivers and r not in policy.allowed_receivers:
                raise PolicyRefused(f"{r!r} may not receive output {out!r} under this node's policy", rule="receivers")
    preprocessing = manifest.params.get("preprocessing", "dealer-free") if kind.spdz else "dealer-free"
    if preprocessing not in ("dealer-free", "insecure-dealer"):
        raise PolicyRefused("params.preprocessing must be 'dealer-free' or 'insecure-dealer'", rule="params")
    if preprocessing == "insecure-dealer" and not policy.allow_insecure_dealer:
        raise PolicyRefused("this node does not allow the insecure test dealer", rule="insecure-dealer")
    if manifest.timeout > policy.max_job_timeout:
        raise PolicyRefused(f"timeout {manifest.timeout:.0f} s is over the node's maximum", rule="timeout")
    spec = manifest.inputs.get(me)
    if spec is not None:
        dataset = config.datasets.get(spec.dataset)
        if dataset is None:
            raise PolicyRefused(f"this node has no dataset {spec.dataset!r}", rule="datasets")
        try:
            dataset.check_columns(list(spec.columns))
        except ConfigError as exc:
            raise PolicyRefused(str(exc), rule="columns") from None
        if kind.statistics and count_rows is not None:
            rows = count_rows(spec.dataset)
            if rows < policy.min_group_size:
                raise PolicyRefused(
                    f"dataset {spec.dataset!r} has fewer rows than the minimum group size", rule="min_group_size"
                )
        if kind.dp:
            if manifest.dp is None or spec.dataset not in config.budgets:
                raise PolicyRefused(f"DP job on dataset {spec.dataset!r} without a DP budget", rule="dp")
            if check_budget is not None:
                check_budget(spec.dataset, manifest.dp.epsilon, manifest.dp.delta)
    return kind


def _check_shape(kind: JobKind, manifest: Manifest) -> None:
    if set(manifest.outputs) != set(kind.outputs):
        raise PolicyRefused(
            f"job kind {kind.name!r} produces output(s) {', '.join(kind.outputs)}; the manifest must name their receivers",
            rule="params",
        )
    if kind.inputs == "all" and set(manifest.inputs) != set(manifest.parties):
        raise PolicyRefused(f"job kind {kind.name!r} needs an input from every party", rule="params")
    if kind.inputs == "data_owner" and set(manifest.inputs) != {manifest.roles.get("data_owner")}:
        raise PolicyRefused(f"job kind {kind.name!r} reads only the data owner's rows", rule="params")
    if kind.inputs == "clients":
        holders = set(manifest.roles.values())
        if set(manifest.inputs) != set(manifest.parties) - holders:
            raise PolicyRefused(
                f"job kind {kind.name!r} needs an input from every party except the role holders", rule="params"
            )
    if kind.inputs == "none" and manifest.inputs:
        raise PolicyRefused(f"job kind {kind.name!r} reads no datasets", rule="params")
    if kind.dp and manifest.dp is None:
        raise PolicyRefused(f"job kind {kind.name!r} needs a [dp] table", rule="dp")
    extra_roles = set(manifest.roles) - set(kind.roles)
    if extra_roles:
        raise PolicyRefused(f"unknown role(s) {', '.join(sorted(extra_roles))}", rule="roles")
    try:
        kind.check_params(manifest)
    except ConfigError as exc:
        raise PolicyRefused(str(exc), rule="params") from None


def describe(exc: PolicyRefused) -> dict[str, Any]:
    """A refusal as sent to the proposer: the code, the rule and the reason."""
    return {"code": exc.code, "rule": exc.rule, "message": str(exc)}
