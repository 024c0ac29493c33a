"""Built-in job kinds: what each computes, what it needs, and how it runs on a node.

A :class:`JobKind` declares the outputs it produces, the roles it needs, whether every party
provides an input, whether it is a statistic (the node's minimum group size applies) and whether
it spends privacy budget; its ``run`` receives a :class:`JobContext` holding this party's session,
the agreed manifest and only the columns the manifest names for this party, and returns the
outputs this party receives.

``secure-sum``
    Each party sums the named numeric columns of its dataset locally (fixed point,
    ``params.scale_bits`` fractional bits, default 16) and appends its row count; the additive
    sharing secure sum (:mod:`protocols.secure_sum`) gives the receivers of output ``result``
    the column totals, the total row count and the means, and nothing else. Threat model: that
    of ``protocols.secure_sum`` (semi-honest; up to n-1 colluders learn nothing more than the
    output). Every party must name the same number of columns; names come from the first party.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError
from mpc.ring import decode_int, encode_int
from mpc.session import Session
from parties.manifest import Manifest
from protocols import gc, ml, spdz
from protocols.spdz.dealer import InsecureDealer
from parties.alignment import ALIGN_PARAM, check_align_param
from protocols.psi import Normalization, PsiConfig, psi_cardinality, psi_intersection, psi_join
from protocols.spdz.preprocessing import Requirements, SpdzPreprocessing
from protocols.spdz.stats import joint_statistics, statistics_requirements
from protocols.spdz_offline import DealerFreePreprocessing, preprocessing_for_job, save
from protocols.secagg import SecAggParams
from protocols.secagg.fedavg import FedAvgConfig, federated_averaging
from protocols.secagg.models import ModelSpec
from protocols.secure_sum import secure_sum_to

__all__ = ["JobContext", "JobKind", "JOB_KINDS", "get_kind", "encode_column_sums", "decode_column_sums"]

MAX_SCALE_BITS = 30


@dataclass
class JobContext:
    """What a job's ``run`` sees at one party.

    Attributes:
        session: this party's session (party ids in manifest party order).
        manifest: the agreed manifest.
        party: this party's name.
        data: this party's input columns (only those the manifest names), or empty.
        progress: call with a fraction in [0, 1] and a label to report progress.
    """

    session: Session
    manifest: Manifest
    party: str
    data: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[float, str], None] = lambda fraction, label: None
    preprocessing_dir: Path | None = None
    storage_key: bytes | None = None
    results_dir: Path | None = None
    _store: Path | None = field(default=None, init=False, repr=False)

    async def setup_spdz(self, need: Requirements) -> SpdzPreprocessing:
        """Produce and reserve this job's SPDZ2k preprocessing ``need`` and attach the engine to
        the job's session (every party calls it); returns the provider (for :meth:`keep_unused`).

        Dealer-free (OT-based) unless the manifest asks for ``params.preprocessing =
        "insecure-dealer"``, which every node's policy must have allowed (``allow_insecure_dealer``).
        Material left over by an earlier job among the same parties is reloaded once.
        """
        insecure = self.manifest.params.get("preprocessing", "dealer-free") == "insecure-dealer"
        store = None
        if not insecure and self.preprocessing_dir is not None:
            self.preprocessing_dir.mkdir(parents=True, exist_ok=True)
            names = "\x00".join(self.manifest.parties).encode()
            store = self.preprocessing_dir / f"{hashlib.sha256(names).hexdigest()[:32]}.store"
        self._store = store
        provider = await preprocessing_for_job(
            self.session, need, insecure_dealer=insecure, store_path=store, storage_key=self.storage_key
        )
        spdz.setup(self.session, provider)  # the provider already holds the job's reservation
        return provider

    def progress_after(self, start: float) -> Callable[[float, str], None]:
        """A progress callback mapping a step's own fraction onto ``[start, 1]`` of the job's."""

        def progress(fraction: float, label: str) -> None:
            self.progress(start + (1.0 - start) * fraction, label)

        return progress

    def load_model(self, job_id: str) -> ml.Model:
        """A model released to this node by an earlier ``train-logreg`` job.

        Raises:
            ConfigError: no such result here, or it holds no model.
        """
        if self.results_dir is None or not all(c in "0123456789abcdef" for c in job_id):
            raise ConfigError("no results directory")
        path = self.results_dir / f"{job_id}.json"
        try:
            doc = json.loads(path.read_text())
            return model_from_dict(doc["outputs"]["model"])
        except (OSError, ValueError, KeyError):
            raise ConfigError(f"no model of job {job_id} was released to this node") from None

    def keep_unused(self, provider: SpdzPreprocessing) -> None:
        """Persist what the job did not use (encrypted, single use); every party calls it."""
        # Two concurrent jobs of one party set share the store: each party keeps the last save,
        # and a later load that finds the parties' stores differ loads nothing (never reuses).
        if self._store is not None and isinstance(provider, DealerFreePreprocessing) and self.storage_key is not None:
            save(provider, self._store, self.storage_key)

    def receiver_ids(self, output: str) -> list[int]:
        """Party ids of the receivers of ``output``."""
        return [self.manifest.parties.index(r) for r in self.manifest.outputs[output]]

    def columns_matrix(self) -> np.ndarray:
        """This party's numeric input columns as a (rows, columns) float64 matrix."""
        spec = self.manifest.inputs[self.party]
        cols = [np.asarray(self.data[c], dtype=np.float64) for c in spec.columns]
        return np.stack(cols, axis=1) if cols else np.zeros((0, 0))


RunFn = Callable[[JobContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class JobKind:
    """A built-in job kind (see the module docstring)."""

    name: str
    outputs: tuple[str, ...]
    run: RunFn
    roles: tuple[str, ...] = ()
    spdz: bool = False  # runs on the SPDZ2k engine (params.preprocessing may name the provider)
    inputs: str = "all"  # "all" | "clients" (all but role holders) | "data_owner" (that role) | "none"
    statistics: bool = False
    dp: bool = False
    check_params: Callable[[Manifest], None] = lambda manifest: None


def reject_unknown_params(manifest: Manifest, allowed: set[str]) -> None:
    """Raise ConfigError naming any parameter the job kind does not know."""
    unknown = set(manifest.params) - allowed
    if unknown:
        raise ConfigError(f"{manifest.kind}: unknown parameter(s) {', '.join(sorted(unknown))}")


# ----------------------------------------------------------------------------- secure-sum


def encode_column_sums(data: np.ndarray, scale_bits: int) -> np.ndarray:
    """A party's contribution to secure-sum: fixed-point column sums, then its row count.

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


def _check_sum(manifest: Manifest) -> None:
    reject_unknown_params(manifest, {"scale_bits"})
    check_int(manifest.params.get("scale_bits", 16), "secure-sum: scale_bits", lo=0, hi=MAX_SCALE_BITS)
    widths = {len(spec.columns) for spec in manifest.inputs.values()}
    if len(widths) != 1:
        raise ConfigError("secure-sum: every party must name the same number of columns")


async def _run_sum(ctx: JobContext) -> dict[str, Any]:
    scale_bits = int(ctx.manifest.params.get("scale_bits", 16))
    ctx.progress(0.1, "local sums")
    contribution = encode_column_sums(ctx.columns_matrix(), scale_bits)
    ctx.progress(0.3, "secure sum")
    total = await secure_sum_to(ctx.session, contribution, ctx.receiver_ids("result"))
    ctx.progress(1.0, "done")
    if total is None:
        return {}
    names = list(ctx.manifest.inputs[ctx.manifest.parties[0]].columns)
    return {"result": decode_column_sums(total, names, scale_bits)}


# ----------------------------------------------------------------------------- statistics


def _check_statistics(manifest: Manifest) -> None:
    reject_unknown_params(manifest, {"offset", "preprocessing"})
    offset = manifest.params.get("offset", 0.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise ConfigError("statistics: offset must be a number")
    if any(len(spec.columns) != 1 for spec in manifest.inputs.values()):
        raise ConfigError("statistics: every party names exactly one column")


async def _run_statistics(ctx: JobContext) -> dict[str, Any]:
    receivers = ctx.receiver_ids("result")
    ctx.progress(0.05, "preprocessing")
    prep = await ctx.setup_spdz(statistics_requirements(ctx.session.n_parties, receivers))
    ctx.progress(0.6, "joint statistics")
    column = np.asarray(ctx.data[ctx.manifest.inputs[ctx.party].columns[0]], dtype=np.float64)
    result = await joint_statistics(ctx.session, column, receivers, offset=float(ctx.manifest.params.get("offset", 0.0)))
    ctx.keep_unused(prep)
    ctx.progress(1.0, "done")
    return {} if result is None else {"result": result}


# ----------------------------------------------------------------------------- compare

COMPARE_STATISTICS = ("count", "sum", "max")


def _check_compare(manifest: Manifest) -> None:
    if len(manifest.parties) != 2:
        raise ConfigError("compare: exactly two parties")
    reject_unknown_params(manifest, {"statistic", "scale_bits", "reveal_maximum"})
    if manifest.params.get("statistic", "count") not in COMPARE_STATISTICS:
        raise ConfigError(f"compare: statistic must be one of {', '.join(COMPARE_STATISTICS)}")
    check_int(manifest.params.get("scale_bits", 0), "compare: scale_bits", lo=0, hi=MAX_SCALE_BITS)
    if not isinstance(manifest.params.get("reveal_maximum", False), bool):
        raise ConfigError("compare: reveal_maximum must be true or false")
    if any(len(spec.columns) != 1 for spec in manifest.inputs.values()):
        raise ConfigError("compare: every party names exactly one column")


def local_statistic(values: np.ndarray, statistic: str, scale_bits: int) -> int:
    """A party's input to ``compare``: its statistic as a fixed-point signed 64-bit integer.

    Raises:
        ConfigError: an empty column for ``max``, or a value outside the 63-bit range.
    """
    if statistic == "count":
        value = float(values.shape[0])
    elif statistic == "sum":
        value = float(values.sum())
    elif values.shape[0] == 0:
        raise ConfigError("compare: max of an empty column")
    else:
        value = float(values.max())
    scaled = round(value * (1 << scale_bits))
    if abs(scaled) >= 1 << 62:
        raise ConfigError("compare: the statistic is too large for 64-bit fixed point; lower scale_bits")
    return scaled


async def _run_compare(ctx: JobContext) -> dict[str, Any]:
    params = ctx.manifest.params
    statistic, scale_bits = params.get("statistic", "count"), int(params.get("scale_bits", 0))
    reveal_max = bool(params.get("reveal_maximum", False))
    ctx.progress(0.1, "local statistic")
    column = ctx.data[ctx.manifest.inputs[ctx.party].columns[0]]
    values = np.zeros(len(column)) if statistic == "count" else np.asarray(column, dtype=np.float64)
    value = np.array([local_statistic(values, statistic, scale_bits)], dtype=np.int64)
    me = ctx.manifest.parties.index(ctx.party)
    receivers = ctx.receiver_ids("result")
    to = receivers[0] if len(receivers) == 1 else None
    ctx.progress(0.3, "garbled circuit")
    if reveal_max:
        res = await gc.compare_and_maximum(ctx.session, value, peer=1 - me, width=64, signed=True, outputs_to=to)
        sign, top = (None, None) if res is None else res
    else:
        sign, top = await gc.compare(ctx.session, value, peer=1 - me, width=64, signed=True, outputs_to=to), None
    ctx.progress(1.0, "done")
    if sign is None:
        return {}
    order = int(sign[0])
    larger = "tie" if order == 0 else (ctx.party if order > 0 else ctx.manifest.parties[1 - me])
    out: dict[str, Any] = {"statistic": statistic, "larger": larger}
    if top is not None:
        out["maximum"] = float(top[0]) / (1 << scale_bits)
    return {"result": out}


# ----------------------------------------------------------------------------- train-logreg / predict

_TRAIN_PARAMS = {
    "partition", "label", "epochs", "batch_size", "learning_rate", "seed", "sigmoid", "standardize", "preprocessing", ALIGN_PARAM,
}


def train_params(manifest: Manifest) -> ml.TrainParams:
    """The training hyper-parameters a manifest describes.

    Raises:
        ConfigError: unknown or invalid parameters.
    """
    p = manifest.params
    reject_unknown_params(manifest, _TRAIN_PARAMS)
    keys = ("epochs", "batch_size", "learning_rate", "seed", "sigmoid", "standardize")
    return ml.TrainParams(**{k: p[k] for k in keys if k in p})


def _label_holders(manifest: Manifest) -> list[str]:
    label = manifest.params.get("label")
    return [party for party, spec in manifest.inputs.items() if spec.columns and spec.columns[-1] == label]


def _check_train(manifest: Manifest) -> None:
    train_params(manifest)
    partition = manifest.params.get("partition", "horizontal")
    if partition not in ("horizontal", "vertical"):
        raise ConfigError("train-logreg: partition must be 'horizontal' or 'vertical'")
    if not isinstance(manifest.params.get("label"), str):
        raise ConfigError("train-logreg: params.label names the label column")
    holders = _label_holders(manifest)
    if partition == "horizontal" and len(holders) != len(manifest.parties):
        raise ConfigError("train-logreg: in horizontal mode every party names its features, then the label column")
    if partition == "vertical" and len(holders) != 1:
        raise ConfigError("train-logreg: in vertical mode exactly one party names the label column (last)")
    if ALIGN_PARAM in manifest.params:
        check_align_param(manifest.params[ALIGN_PARAM])
        if partition != "vertical":
            raise ConfigError(f"train-logreg: {ALIGN_PARAM} aligns the rows of a vertical partition")


def _provider_class(manifest: Manifest) -> type:
    return InsecureDealer if manifest.params.get("preprocessing") == "insecure-dealer" else DealerFreePreprocessing


async def _run_train(ctx: JobContext) -> dict[str, Any]:
    manifest, session = ctx.manifest, ctx.session
    params, partition = train_params(manifest), manifest.params.get("partition", "horizontal")
    holders = _label_holders(manifest)
    label_owner = None if partition == "horizontal" else manifest.parties.index(holders[0])
    m = ctx.columns_matrix()
    if ctx.party in holders:
        features, labels = m[:, :-1], m[:, -1]
        if not np.all((labels == 0) | (labels == 1)):
            raise ConfigError("train-logreg: the label column must hold 0/1")
    else:
        features, labels = m, None
    receivers = ctx.receiver_ids("model")
    rows, cols = await ml.exchange_shapes(session, features)
    need = ml.train_requirements(
        params, partition=partition, rows=rows, columns=cols, label_owner=label_owner,
        receivers=receivers, prep=_provider_class(manifest),
    )
    ctx.progress(0.02, "preprocessing")
    provider = await ctx.setup_spdz(need)
    result = await ml.train_logreg(
        session, features, labels, partition=partition, params=params,
        receivers=receivers, label_owner=label_owner, progress=ctx.progress_after(0.1),
    )
    ctx.keep_unused(provider)
    if result.model is None:
        return {}
    return {"model": model_to_dict(result.model) | {"epochs": len(result.epochs)}}


def model_to_dict(model: ml.Model) -> dict[str, Any]:
    """A JSON-friendly model (as written to result files)."""
    return {
        "weights": [np.asarray(w).tolist() for w in model.weights],
        "biases": [np.asarray(b).tolist() for b in model.biases],
        "mean": None if model.mean is None else np.asarray(model.mean).tolist(),
        "scale": None if model.scale is None else np.asarray(model.scale).tolist(),
    }


def model_from_dict(doc: Any) -> ml.Model:
    """The inverse of :func:`model_to_dict`.

    Raises:
        ConfigError: a malformed model.
    """
    if not isinstance(doc, dict) or not {"weights", "biases", "mean", "scale"} <= set(doc):
        raise ConfigError("not a model")
    return ml.Model(
        tuple(np.asarray(w) for w in doc["weights"]),
        tuple(np.asarray(b) for b in doc["biases"]),
        None if doc["mean"] is None else np.asarray(doc["mean"]),
        None if doc["scale"] is None else np.asarray(doc["scale"]),
    )


_DP_TRAIN_PARAMS = {"label", "epochs", "batch_size", "learning_rate", "seed", "clip", "noise_multiplier", "scaling", "preprocessing"}


def _dp_train_settings(manifest: Manifest) -> tuple[ml.TrainParams, float, float]:
    reject_unknown_params(manifest, _DP_TRAIN_PARAMS)
    p = manifest.params
    keys = ("epochs", "batch_size", "learning_rate", "seed")
    params = ml.TrainParams(**{k: p[k] for k in keys if k in p}, standardize=False)
    clip, sigma = p.get("clip", 1.0), p.get("noise_multiplier", 2.0)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (clip, sigma)):
        raise ConfigError("train-logreg-dp: clip and noise_multiplier must be positive numbers")
    return params, float(clip), float(sigma)


def _check_train_dp(manifest: Manifest) -> None:
    params, _, sigma = _dp_train_settings(manifest)
    holders = _label_holders(manifest)
    if len(holders) != len(manifest.parties):
        raise ConfigError("train-logreg-dp: every party names its features, then the label column")
    _scaling(manifest, len(next(iter(manifest.inputs.values())).columns) - 1)
    if manifest.dp is None:
        raise ConfigError("train-logreg-dp: needs a [dp] table")
    eps = ml.planned_epsilon(params, params.batch_size, params.batch_size, sigma, manifest.dp.delta)
    if manifest.dp.epsilon + 1e-9 < eps:
        raise ConfigError(f"train-logreg-dp: [dp] must cover the planned epsilon {eps:.4g}")


async def _run_train_dp(ctx: JobContext) -> dict[str, Any]:
    manifest, session = ctx.manifest, ctx.session
    params, clip, sigma = _dp_train_settings(manifest)
    assert manifest.dp is not None  # checked by _check_train_dp
    m = ctx.columns_matrix()
    mean, std = _scaling(manifest, m.shape[1] - 1)
    features, labels = (m[:, :-1] - mean) / std, m[:, -1]
    if not np.all((labels == 0) | (labels == 1)):
        raise ConfigError("train-logreg-dp: the label column must hold 0/1")
    receivers = ctx.receiver_ids("model")
    rows, cols = await ml.exchange_shapes(session, features)
    need = ml.dp_requirements(
        params, rows=rows, columns=cols, clip=clip, noise_multiplier=sigma, delta=manifest.dp.delta,
        receivers=receivers, prep=_provider_class(manifest),
    )
    ctx.progress(0.02, "preprocessing")
    provider = await ctx.setup_spdz(need)
    result, epsilon = await ml.train_logreg_dp(
        session, features, labels, params=params, clip=clip, noise_multiplier=sigma,
        delta=manifest.dp.delta, receivers=receivers, progress=ctx.progress_after(0.1),
    )
    ctx.keep_unused(provider)
    if result.model is None:
        return {}
    return {"model": model_to_dict(result.model) | {"epsilon": epsilon, "delta": manifest.dp.delta}}


def _check_predict(manifest: Manifest) -> None:
    reject_unknown_params(manifest, {"model_job", "preprocessing"})
    job = manifest.params.get("model_job")
    if not isinstance(job, str) or len(job) != 32:
        raise ConfigError("predict: params.model_job names the train-logreg job whose model the model owner holds")
    if list(manifest.outputs["prediction"]) != [manifest.roles.get("data_owner")]:
        raise ConfigError("predict: the prediction goes to the data owner only")


async def _run_predict(ctx: JobContext) -> dict[str, Any]:
    manifest, session = ctx.manifest, ctx.session
    data_owner, model_owner = manifest.roles["data_owner"], manifest.roles["model_owner"]
    model = None
    if ctx.party == model_owner:
        model = ctx.load_model(str(manifest.params["model_job"]))
    sizes = await session.broadcast(
        "model-shape", None if model is None else [int(model.weights[0].shape[0]), 1], sender=manifest.parties.index(model_owner)
    )
    if not (isinstance(sizes, list) and len(sizes) == 2 and all(type(v) is int and 0 < v < 10_000 for v in sizes)):
        raise ConfigError("predict: malformed model shape from the model owner")
    features = ctx.columns_matrix() if ctx.party == data_owner else None
    rows, _ = await ml.exchange_shapes(session, features)
    spec = ml.ModelSpec(tuple(sizes))
    to = [manifest.parties.index(data_owner)]
    need = ml.predict_requirements(
        spec, rows[to[0]], n_parties=session.n_parties, data_owner=to[0],
        model_owner=manifest.parties.index(model_owner), to=to, prep=_provider_class(manifest),
    )
    ctx.progress(0.05, "preprocessing")
    provider = await ctx.setup_spdz(need)
    ctx.progress(0.5, "inference")
    out = await ml.predict(session, features, model, spec=spec, data_owner=data_owner, model_owner=model_owner, to=to)
    ctx.keep_unused(provider)
    return {} if out is None else {"prediction": {"probability": np.asarray(out).reshape(-1).tolist()}}


# ----------------------------------------------------------------------------- psi

_PSI_PARAMS = {"protocol", "unicode_form", "casefold", "collapse_whitespace", "strip", "duplicates"}


def psi_config(manifest: Manifest, salt: bytes) -> PsiConfig:
    """The PSI parameters a manifest describes, salted with the job's agreed id.

    Raises:
        ConfigError: unknown or invalid parameters.
    """
    p = manifest.params
    reject_unknown_params(manifest, _PSI_PARAMS)
    try:
        normalization = Normalization(
            unicode_form=p.get("unicode_form", "NFC"),
            casefold=p.get("casefold", False),
            collapse_whitespace=p.get("collapse_whitespace", True),
            strip=p.get("strip", True),
        )
    except TypeError as exc:
        raise ConfigError(f"{manifest.kind}: {exc}") from None
    return PsiConfig(salt=salt, normalization=normalization, duplicates=p.get("duplicates", "error"))


def _check_psi(manifest: Manifest) -> None:
    psi_config(manifest, bytes(16))
    protocol = manifest.params.get("protocol", "ecdh")
    if protocol not in ("ecdh", "ot"):
        raise ConfigError(f"{manifest.kind}: protocol must be 'ecdh' or 'ot'")
    if protocol == "ot" and (len(manifest.parties) != 2 or manifest.kind == "psi-cardinality"):
        raise ConfigError(f"{manifest.kind}: the OT-based protocol is for two parties (intersection or join)")
    if manifest.kind == "psi-join" and set(manifest.outputs["result"]) != set(manifest.parties):
        raise ConfigError("psi-join: every party learns its own matching rows; output 'result' must go to all")
    if any(len(spec.columns) != 1 for spec in manifest.inputs.values()):
        raise ConfigError(f"{manifest.kind}: every party names exactly one identifier column")


async def _run_psi(ctx: JobContext) -> dict[str, Any]:
    manifest = ctx.manifest
    config = psi_config(manifest, bytes.fromhex(ctx.session.session_id))
    column = ctx.data[manifest.inputs[ctx.party].columns[0]]
    identifiers = [str(v) for v in column]
    receivers = ctx.receiver_ids("result")
    protocol = manifest.params.get("protocol", "ecdh")
    ctx.progress(0.1, "private set intersection")
    if manifest.kind == "psi-cardinality":
        count = await psi_cardinality(ctx.session, identifiers, config, receivers=receivers)
        return {} if count is None else {"result": {"count": count}}
    if manifest.kind == "psi-join":
        rows = await psi_join(ctx.session, identifiers, config, protocol=protocol)
    else:
        rows = await psi_intersection(ctx.session, identifiers, config, receivers=receivers, protocol=protocol)
        if rows is None:
            return {}
    ctx.progress(1.0, "done")
    rows = np.asarray(rows, dtype=np.int64)
    return {"result": {"count": int(rows.size), "rows": rows.tolist(), "identifiers": [identifiers[i] for i in rows]}}


# ----------------------------------------------------------------------------- secagg-fedavg

_FEDAVG_PARAMS = {
    "model", "label", "rounds", "local_steps", "learning_rate", "clip", "noise_multiplier",
    "max_dropouts", "hidden", "stage_timeout", "eval_every", "scaling", "neighbors",
}


def fedavg_config(manifest: Manifest) -> FedAvgConfig:
    """The FedAvg configuration a manifest describes (the same at every party).

    Raises:
        ConfigError: unknown or invalid parameters.
    """
    p = manifest.params
    reject_unknown_params(manifest, _FEDAVG_PARAMS)
    server = manifest.roles.get("server")
    if server is None:
        raise ConfigError("secagg-fedavg: needs a 'server' role")
    label = p.get("label")
    specs = list(manifest.inputs.values())
    if not isinstance(label, str) or not specs or any(spec.columns[-1] != label for spec in specs):
        raise ConfigError("secagg-fedavg: every client's last column must be the label named by params.label")
    widths = {len(spec.columns) for spec in specs}
    if len(widths) != 1 or widths == {1}:
        raise ConfigError("secagg-fedavg: every client names the same number of feature columns, then the label")
    n_features = widths.pop() - 1
    try:
        model = ModelSpec(p.get("model", "logreg"), n_features, int(p.get("hidden", 16)))
        return FedAvgConfig(
            model=model,
            n_clients=len(manifest.parties) - 1,
            rounds=int(p.get("rounds", 10)),
            local_steps=int(p.get("local_steps", 10)),
            learning_rate=float(p.get("learning_rate", 0.5)),
            clip=float(p.get("clip", 1.0)),
            noise_multiplier=float(p.get("noise_multiplier", 1.0)),
            delta=manifest.dp.delta if manifest.dp is not None and manifest.dp.delta > 0 else 1e-5,
            max_dropouts=int(p.get("max_dropouts", 0)),
            secagg=SecAggParams(
                dim=1,
                server=manifest.parties.index(server),
                stage_timeout=float(p.get("stage_timeout", 5.0)),
                neighbors=p.get("neighbors"),
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"secagg-fedavg: invalid parameter: {exc}") from None


def _scaling(manifest: Manifest, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    scaling = manifest.params.get("scaling")
    if scaling is None:
        return np.zeros(n_features), np.ones(n_features)
    if not isinstance(scaling, dict) or set(scaling) != {"mean", "std"}:
        raise ConfigError("secagg-fedavg: scaling needs 'mean' and 'std' lists")
    mean, std = np.asarray(scaling["mean"], dtype=np.float64), np.asarray(scaling["std"], dtype=np.float64)
    if mean.shape != (n_features,) or std.shape != (n_features,) or not np.all(std > 0):
        raise ConfigError("secagg-fedavg: scaling mean/std must have one positive entry per feature")
    return mean, std


def _check_fedavg(manifest: Manifest) -> None:
    config = fedavg_config(manifest)
    config.secagg_params().plan(len(manifest.parties))
    _scaling(manifest, config.model.n_features)
    if set(manifest.outputs["model"]) != set(manifest.parties):
        raise ConfigError("secagg-fedavg: every party learns the model each round; output 'model' must go to all")
    spend = config.planned_spend()
    if manifest.dp is None or manifest.dp.epsilon + 1e-9 < spend.epsilon or manifest.dp.delta < config.delta:
        raise ConfigError(f"secagg-fedavg: [dp] must cover the planned spend (epsilon {spend.epsilon:.4g}, delta {config.delta:g})")
    check_int(
        manifest.params.get("eval_every", 5),
        "eval_every",
        lo=2,
        message="secagg-fedavg: eval_every must be an integer >= 2 (every k-th row is held out)",
    )


def split_rows(x: np.ndarray, y: np.ndarray, every: int) -> dict[str, np.ndarray]:
    """Hold out every ``every``-th row for evaluation (a public, deterministic split)."""
    held = np.arange(x.shape[0]) % every == 0
    return {"x": x[~held], "y": y[~held], "x_eval": x[held], "y_eval": y[held]}


async def _run_fedavg(ctx: JobContext) -> dict[str, Any]:
    config = fedavg_config(ctx.manifest)
    data = None
    if ctx.party in ctx.manifest.inputs:
        m = ctx.columns_matrix()
        mean, std = _scaling(ctx.manifest, config.model.n_features)
        x, y = (m[:, :-1] - mean) / std, m[:, -1]
        if not np.all((y == 0) | (y == 1)):
            raise ConfigError("secagg-fedavg: the label column must hold 0/1")
        data = split_rows(x, y, int(ctx.manifest.params.get("eval_every", 5)))
    ctx.progress(0.05, "training")
    report = await federated_averaging(ctx.session, data, config)
    ctx.progress(1.0, "done")
    rounds = [
        {"round": r.round, "survivors": len(r.survivors), "epsilon": r.epsilon, "accuracy": r.accuracy}
        for r in report.rounds
    ]
    return {
        "model": {
            "model": config.model.kind,
            "weights": np.asarray(report.final).tolist(),
            "rounds": rounds,
            "epsilon": report.epsilon,
            "delta": config.delta,
        }
    }


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("secure-sum", outputs=("result",), run=_run_sum, statistics=True, check_params=_check_sum),
        JobKind(
            "statistics", outputs=("result",), run=_run_statistics, statistics=True, spdz=True, check_params=_check_statistics
        ),
        JobKind("compare", outputs=("result",), run=_run_compare, statistics=True, check_params=_check_compare),
        JobKind("train-logreg", outputs=("model",), run=_run_train, spdz=True, check_params=_check_train),
        JobKind("train-logreg-dp", outputs=("model",), run=_run_train_dp, spdz=True, dp=True, check_params=_check_train_dp),
        JobKind(
            "predict",
            outputs=("prediction",),
            run=_run_predict,
            roles=("data_owner", "model_owner"),
            inputs="data_owner",
            spdz=True,
            check_params=_check_predict,
        ),
        *(
            JobKind(name, outputs=("result",), run=_run_psi, check_params=_check_psi)
            for name in ("psi", "psi-cardinality", "psi-join")
        ),
        JobKind(
            "secagg-fedavg",
            outputs=("model",),
            run=_run_fedavg,
            roles=("server",),
            inputs="clients",
            dp=True,
            check_params=_check_fedavg,
        ),
    )
}


def get_kind(name: str) -> JobKind | None:
    """The job kind called ``name``, if any."""
    return JOB_KINDS.get(name)
