"""Inference with a secret model on secret inputs: logistic regression and ReLU networks.

One party (``data_owner``) holds patients' features; the model is held in plaintext by another
party (``model_owner``), or secret-shared among all parties (:class:`~protocols.ml.model.ModelShares`
from an earlier training job), or already secret inside this job
(:class:`~protocols.ml.model.SecretModel`). Only the requesting parties (``to``, by default the
data owner) learn the outputs; nobody learns the model or the features.

Recipe (``f`` fractional bits; ``m`` rows, layer sizes ``d = h_0, h_1, .., h_k``):

1. *Input* the features (one round) and the model (one round: the owner inputs the packed ring
   encoding, or every party inputs its share and the shares are added).
2. *Standardize* (if the model has it): ``x' = (x - mean) * 2^(2f) / scale`` by one Beaver
   product of a fixed-point and an integer array (scale ``3f``), then one truncation by ``2f``:
   2 rounds.
3. *Layers*: ``z = a W_l`` by one matrix Beaver product left untruncated (scale ``2f``), plus
   ``b_l`` shifted to scale ``2f`` (local). Hidden layers: ReLU by the engine's *exact* LTZ of
   ``z`` (6 rounds) in parallel with the truncation of ``z`` (1 round), then one product of the
   bit and the value: ``a = trunc(z) (1 - [z < 0])`` (7 rounds per hidden layer after the
   product). The last layer: one truncation (the logits).
4. *Reveal* the logits to ``to`` only (MAC-checked). A requested probability is computed by the
   receiver from the logit (the logistic function is public and invertible: the logit reveals
   nothing more than the probability).

Rounds: 2 (inputs) + 2 (standardization) + 8 per hidden layer + 2 (last layer) + 5 (the
opening and the engine's MAC check with its verdict): 19 for the 30-16-1 MLP, 11 for
logistic regression.

Security: the engine's (:mod:`protocols.spdz.engine`): active, dishonest majority, abort, given
secure preprocessing. Public: ``m``, the layer sizes, who owns what. The receivers learn the
logits; nothing else is revealed to anybody. A party holding model shares can change the model
only by changing its own share (like any input).

Fixed-point error (``f = 16``): inputs and weights are rounded to ``2^-16`` (``1 / scale`` to
``2^-32``); each truncation adds at most ``2^-16``; so a logit is within about
``2^-16 (1 + sum_j |x'_j| + |W| terms)`` of float inference on the rounded model, ``1e-3`` for
the benchmark's models (tests check ``5e-3``). Ranges: ``|z| < 2^30`` at every layer and
standardized features below ``2^14``.

Bytes per party to each peer (Beaver opens, 16 bytes per element): ``m d`` (standardization)
``+ (m h_l + h_l h_{l+1})`` per layer ``+ 16 * 179 m h`` per hidden unit's exact ReLU.

Papers: Mohassel, Zhang, "SecureML" (S&P 2017); Cramer et al., "SPDZ2k" (CRYPTO 2018);
Damgard et al., "New Primitives for Actively-Secure MPC over Rings" (S&P 2019).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from mpc.errors import ConfigError
from mpc.session import Session
from protocols import spdz
from protocols.spdz import compare as cmp
from protocols.spdz import ordering
from protocols.spdz.array import SecretArray
from protocols.spdz.preprocessing import Requirements, reveal_cost

from protocols.ml.fixed import raw_product, reinterpret, truncate
from protocols.ml.model import Model, ModelShares, ModelSpec, SecretModel, encode

__all__ = ["predict", "secret_logits", "input_model", "predict_requirements"]

Output = Literal["logit", "probability"]


async def input_model(
    session: Session,
    model: Model | ModelShares | SecretModel | None,
    spec: ModelSpec,
    model_owner: str | int | None,
) -> SecretModel:
    """The model as secret arrays of this job (see the module docstring, step 1).

    Args:
        session: this party's session (with an engine).
        model: at ``model_owner``, its :class:`Model`; with ``model_owner=None``, this party's
            :class:`ModelShares` (every party) or a :class:`SecretModel` of this job.
        spec: the public shape (identical at every party).
        model_owner: the owner of a plaintext model, or ``None``.

    Raises:
        ConfigError: the model does not match ``spec`` or is of the wrong kind for this party.
    """
    eng = spdz.engine_of(session)
    if isinstance(model, SecretModel):
        if model.spec != spec:
            raise ConfigError("the secret model does not match the spec")
        return model
    if model_owner is not None:
        owner = session.party_index(model_owner)
        value = None
        if session.party_id == owner:
            if not isinstance(model, Model):
                raise ConfigError("the model owner must pass its Model")
            if model.spec != spec:
                raise ConfigError(f"the model has shape {model.spec}, the job says {spec}")
            value = encode(model, eng.frac_bits).view(np.int64)
        packed = await spdz.input(session, value, owner=owner, shape=(spec.size,), frac_bits=0)
        return SecretModel.from_packed(packed, spec)
    if not isinstance(model, ModelShares):
        raise ConfigError("without a model owner every party passes its ModelShares")
    if model.spec != spec or model.frac_bits != eng.frac_bits:
        raise ConfigError("the model shares do not match the spec or the engine's frac_bits")
    parts = await spdz.input_all(session, model.share.view(np.int64), frac_bits=0)
    total = parts[0]
    for j, p in enumerate(parts[1:], start=1):
        if p.shape != (spec.size,) or p.is_fixed:
            raise ConfigError(f"party {session.parties[j]} input a share of the wrong shape")
        total = total + p
    return SecretModel.from_packed(total, spec)


def secret_logits(x: SecretArray, model: SecretModel) -> SecretArray:
    """The logits ``(m, h_k)`` of fixed-point features ``x`` (recorded lazily; steps 2-3)."""
    spec = model.spec
    if x.ndim != 2 or x.shape[1] != spec.n_features:
        raise ConfigError(f"features of shape (m, {spec.n_features}) expected, got {x.shape}")
    eng = x.engine
    f = eng.frac_bits
    a = x if x.is_fixed else x * 1.0
    if spec.standardized:
        if model.mean is None or model.inv_scale is None:
            raise ConfigError("a standardized model needs mean and inv_scale")
        a = truncate(raw_product("mul", a - model.mean, model.inv_scale), 2 * f)
    k = len(model.weights)
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        z = raw_product("matmul", a, w) + reinterpret(b, 0) * (1 << f)  # scale 2f
        if i + 1 < k:
            negative = ordering.ltz(z)  # exact
            a = truncate(z, f) * (1 - negative)
        else:
            a = truncate(z, f)
    return a


async def predict(
    session: Session,
    features: np.ndarray | None,
    model: Model | ModelShares | SecretModel | None,
    *,
    spec: ModelSpec,
    data_owner: str | int,
    model_owner: str | int | None = None,
    to: str | int | Sequence[str | int] | None = None,
    output: Output = "probability",
) -> np.ndarray | None:
    """Predict for the data owner's rows with a secret model; output only to ``to``.

    Every party calls it (SPMD). The session must have an engine; reserve
    :func:`predict_requirements` on its provider first.

    Args:
        session: this party's session.
        features: at ``data_owner``, its ``(m, d)`` float rows; ignored elsewhere.
        model: see :func:`input_model`.
        spec: the model's public shape.
        data_owner: the party holding the features.
        model_owner: the party holding a plaintext model, or ``None`` (shares or secret model).
        to: the receivers (default: the data owner).
        output: ``"probability"`` (sigmoid of a single logit, softmax-free: one column per
            output) or ``"logit"``.

    Returns:
        At a receiver, float64 ``(m,)`` for one output (``(m, h_k)`` otherwise); ``None``
        elsewhere.

    Raises:
        ConfigError: invalid features at the data owner (before any message), or a model that
            does not match ``spec``.
    """
    if output not in ("logit", "probability"):
        raise ConfigError("output must be 'logit' or 'probability'")
    owner = session.party_index(data_owner)
    value = None
    if session.party_id == owner:
        value = np.asarray(features, dtype=np.float64)
        if value.ndim != 2 or value.shape[1] != spec.n_features or not np.all(np.isfinite(value)):
            raise ConfigError(f"features must be finite, of shape (m, {spec.n_features})")
    x = await spdz.input(session, value, owner=owner)
    if x.ndim != 2 or x.shape[1] != spec.n_features or not x.is_fixed:
        raise ConfigError("the data owner input features of the wrong shape")
    secret = await input_model(session, model, spec, model_owner)
    logits = secret_logits(x, secret)
    got = await spdz.reveal(session, logits, to=owner if to is None else to)
    if got is None:
        return None
    out = np.asarray(got, dtype=np.float64)
    if output == "probability":
        out = 0.5 * (1 + np.tanh(out / 2))
    return out[:, 0] if spec.n_outputs == 1 else out


def predict_requirements(
    spec: ModelSpec,
    n_rows: int,
    *,
    n_parties: int,
    data_owner: int,
    model_owner: int | None,
    to: Sequence[int] = (),
    frac_bits: int = 16,
    prep: object = None,
) -> Requirements:
    """The preprocessing :func:`predict` consumes (exactly).

    Args:
        spec: the model's shape.
        n_rows: ``m``.
        n_parties: parties of the job.
        data_owner: id of the features' owner.
        model_owner: id of the plaintext model's owner, or ``None`` for shares (every party
            inputs ``spec.size`` elements). A :class:`SecretModel` consumes no input masks: pass
            ``model_owner=None`` and subtract them, or use this as an upper bound.
        to: receivers' ids (default: the data owner).
        frac_bits: the engine's ``f``.
        prep: the provider that will serve the job, or its class (``comparison_masks`` change
            what is consumed).
    """
    f = frac_bits
    m, d = n_rows, spec.n_features
    owners = [model_owner] if model_owner is not None else list(range(n_parties))
    need = Requirements(input_masks={data_owner: m * d})
    for j in owners:
        need += Requirements(input_masks={j: spec.size})
    if spec.standardized:
        need += Requirements(triples=m * d, truncation_pairs={2 * f: m * d})
    sizes = spec.sizes
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        need += Requirements(matrix_triples={(m, a, b): 1}, truncation_pairs={f: m * b})
        if i + 2 < len(sizes):
            need += cmp.cost(cmp.Want(lt=True), m * b, prep=prep) + Requirements(triples=m * b)
    need += reveal_cost(m * spec.n_outputs, to or [data_owner], n_parties)
    return need
