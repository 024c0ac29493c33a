"""Models of the ML protocols: plaintext, secret (inside a job) and secret-shared (between jobs).

A model is a feed-forward network ``sizes = (d, h_1, ..., h_k)``: optional standardization
``x' = (x - mean) / scale``, then layers ``z = a @ W_l + b_l`` with ReLU between layers and
none after the last (its outputs are logits). Logistic regression is ``sizes = (d, 1)``; the
MLP of the benchmark is ``(30, 16, 1)``.

Three forms:

- :class:`Model` — float arrays (at a party that received the trained model, or the owner of a
  model for inference);
- :class:`SecretModel` — the engine's secret arrays inside one job (e.g. train, then predict
  in the same session, the model never revealed);
- :class:`ModelShares` — one party's additive shares (uint64, summing to the packed ring
  encoding mod 2^64) of a model kept secret-shared after a training job, the input of a later
  ``predict`` job. Shares alone reveal nothing (uniform); they carry no MAC: a later job
  authenticates them again when each party inputs its share, so a party can only change the
  model by changing its own share, as it could change any of its inputs.

Packed ring encoding (:func:`encode`, :meth:`ModelSpec.layout`): ``mean`` with ``f``
fractional bits, ``1 / scale`` with ``2f`` (so that ``(x - mean) / scale`` keeps ``f`` bits of
precision for scales up to ``2^f``), then every ``W_l`` (row-major) and ``b_l`` with ``f``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mpc import fixedpoint
from mpc.checks import check_int
from mpc.errors import ConfigError
from protocols.spdz.array import SecretArray, concatenate

from protocols.ml.fixed import reinterpret

__all__ = [
    "ModelSpec",
    "Model",
    "SecretModel",
    "ModelShares",
    "encode",
    "decode",
    "encode_scaled",
    "decode_scaled",
    "relu_forward",
]


@dataclass(frozen=True)
class ModelSpec:
    """The public shape of a model: layer sizes and whether inputs are standardized."""

    sizes: tuple[int, ...]
    standardized: bool = True

    def __post_init__(self) -> None:
        bad = "a model needs at least an input and an output size, all positive"
        if len(self.sizes) < 2:
            raise ConfigError(bad)
        object.__setattr__(self, "sizes", tuple(check_int(s, "size", lo=1, numpy=True, message=bad) for s in self.sizes))

    @property
    def n_features(self) -> int:
        """Input width ``d``."""
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        """Number of logits per row."""
        return self.sizes[-1]

    def layout(self) -> list[tuple[str, tuple[int, ...], int]]:
        """``(name, shape, scale multiple)`` of each packed part, in order (scale ``k * f``)."""
        out: list[tuple[str, tuple[int, ...], int]] = []
        if self.standardized:
            out += [("mean", (self.n_features,), 1), ("inv_scale", (self.n_features,), 2)]
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            out += [(f"W{i}", (a, b), 1), (f"b{i}", (b,), 1)]
        return out

    @property
    def size(self) -> int:
        """Elements of the packed encoding."""
        return sum(int(np.prod(shape)) for _, shape, _ in self.layout())

    def as_dict(self) -> dict[str, Any]:
        """A msgpack-friendly form (job parameters)."""
        return {"sizes": list(self.sizes), "standardized": self.standardized}

    @classmethod
    def from_dict(cls, d: Any) -> ModelSpec:
        """Inverse of :meth:`as_dict`.

        Raises:
            ConfigError: malformed.
        """
        if not isinstance(d, dict) or not isinstance(d.get("sizes"), (list, tuple)):
            raise ConfigError("a model spec needs 'sizes'")
        return cls(tuple(d["sizes"]), bool(d.get("standardized", True)))


@dataclass(frozen=True, eq=False)
class Model:
    """A plaintext model (float64 arrays).

    Attributes:
        weights: ``W_l`` of shape ``(sizes[l], sizes[l + 1])``.
        biases: ``b_l`` of shape ``(sizes[l + 1],)``.
        mean: per-feature mean subtracted first, or ``None`` (no standardization).
        scale: per-feature divisor after the mean, or ``None``.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        ws = tuple(np.asarray(w, dtype=np.float64) for w in self.weights)
        bs = tuple(np.asarray(b, dtype=np.float64).reshape(-1) for b in self.biases)
        if not ws or len(ws) != len(bs):
            raise ConfigError("a model needs one bias per weight matrix")
        for i, (w, b) in enumerate(zip(ws, bs)):
            if w.ndim != 2 or b.shape != (w.shape[1],) or (i and w.shape[0] != ws[i - 1].shape[1]):
                raise ConfigError(f"layer {i} has inconsistent shapes")
        object.__setattr__(self, "weights", ws)
        object.__setattr__(self, "biases", bs)
        if (self.mean is None) != (self.scale is None):
            raise ConfigError("mean and scale come together")
        if self.mean is not None:
            mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
            scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
            if mean.shape != (ws[0].shape[0],) or scale.shape != mean.shape or np.any(scale <= 0):
                raise ConfigError("mean and scale need one positive entry per feature")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "scale", scale)

    @property
    def spec(self) -> ModelSpec:
        """The public shape of this model."""
        return ModelSpec((self.weights[0].shape[0], *(w.shape[1] for w in self.weights)), self.mean is not None)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Plaintext forward pass: ``(m, sizes[-1])`` logits."""
        a = np.asarray(x, dtype=np.float64)
        if self.mean is not None and self.scale is not None:
            a = (a - self.mean) / self.scale
        return relu_forward(a, self.weights, self.biases)

    @classmethod
    def logistic(cls, w: np.ndarray, mean: np.ndarray | None = None, scale: np.ndarray | None = None) -> Model:
        """A logistic-regression model from ``w`` (``d + 1``, bias last)."""
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        return cls((w[:-1].reshape(-1, 1),), (w[-1:],), mean, scale)


def relu_forward(a: np.ndarray, weights: tuple[np.ndarray, ...], biases: tuple[np.ndarray, ...]) -> np.ndarray:
    """``a @ W_0 + b_0``, ReLU, ... , the last layer linear (float64)."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        a = a @ w + b
        if i + 1 < len(weights):
            a = np.maximum(a, 0.0)
    return a


@dataclass(frozen=True, eq=False)
class SecretModel:
    """A model as secret arrays of one job's engine.

    Attributes:
        spec: the public shape.
        weights, biases: fixed-point secret arrays (``f`` bits).
        mean: fixed-point ``(d,)`` or ``None``.
        inv_scale: an *integer* secret array holding ``round(2^(2f) / scale)``, or ``None``.
    """

    spec: ModelSpec
    weights: tuple[SecretArray, ...]
    biases: tuple[SecretArray, ...]
    mean: SecretArray | None = None
    inv_scale: SecretArray | None = None

    def packed(self) -> SecretArray:
        """The packed ring encoding as one integer secret array (local)."""
        parts: list[SecretArray] = []
        if self.spec.standardized:
            if self.mean is None or self.inv_scale is None:
                raise ConfigError("a standardized model needs mean and inv_scale")
            parts += [reinterpret(self.mean, 0), self.inv_scale]
        for w, b in zip(self.weights, self.biases):
            parts += [reinterpret(w, 0).reshape(-1), reinterpret(b, 0)]
        return concatenate(parts)

    @classmethod
    def from_packed(cls, packed: SecretArray, spec: ModelSpec) -> SecretModel:
        """Split an integer secret array holding the packed encoding (local)."""
        if packed.shape != (spec.size,):
            raise ConfigError(f"a packed model of {spec.size} elements expected, got {packed.shape}")
        f = packed.engine.frac_bits
        parts: dict[str, SecretArray] = {}
        pos = 0
        for name, shape, mult in spec.layout():
            n = int(np.prod(shape))
            piece = packed[pos : pos + n].reshape(shape)
            parts[name] = piece if mult == 2 else reinterpret(piece, f)
            pos += n
        k = len(spec.sizes) - 1
        return cls(
            spec,
            tuple(parts[f"W{i}"] for i in range(k)),
            tuple(parts[f"b{i}"] for i in range(k)),
            parts.get("mean"),
            parts.get("inv_scale"),
        )


@dataclass(frozen=True, eq=False)
class ModelShares:
    """One party's additive shares of a model's packed ring encoding (see the module docstring).

    Attributes:
        spec: the public shape.
        frac_bits: ``f`` of the encoding.
        share: uint64 ``(spec.size,)``; the parties' shares sum to the encoding mod 2^64.
    """

    spec: ModelSpec
    frac_bits: int
    share: np.ndarray

    def __post_init__(self) -> None:
        share = np.asarray(self.share)
        if share.dtype != np.uint64 or share.shape != (self.spec.size,):
            raise ConfigError(f"model shares must be uint64 of shape ({self.spec.size},)")
        fixedpoint.check_frac_bits(self.frac_bits)

    def as_dict(self) -> dict[str, Any]:
        """A msgpack-friendly form (to store between jobs)."""
        return {"spec": self.spec.as_dict(), "frac_bits": self.frac_bits, "share": self.share}

    @classmethod
    def from_dict(cls, d: Any) -> ModelShares:
        """Inverse of :meth:`as_dict`.

        Raises:
            ConfigError: malformed.
        """
        if not isinstance(d, dict):
            raise ConfigError("model shares must be a mapping")
        return cls(ModelSpec.from_dict(d.get("spec")), int(d.get("frac_bits", -1)), np.asarray(d.get("share")))


def encode(model: Model, frac_bits: int) -> np.ndarray:
    """The packed ring encoding of a plaintext model (uint64; see the module docstring).

    Raises:
        ConfigError: a value out of the fixed-point range (e.g. ``1 / scale >= 2^(62 - 2f)``).
    """
    f = fixedpoint.check_frac_bits(frac_bits)
    spec = model.spec
    values: dict[str, np.ndarray] = {}
    if spec.standardized and model.mean is not None and model.scale is not None:
        values["mean"] = model.mean
        values["inv_scale"] = 1.0 / model.scale
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        values[f"W{i}"], values[f"b{i}"] = w, b
    parts = [encode_scaled(np.asarray(values[name]).reshape(-1), mult * f) for name, _, mult in spec.layout()]
    return np.concatenate(parts)


def encode_scaled(x: np.ndarray, bits: int) -> np.ndarray:
    """``round(x * 2^bits)`` as ring elements (uint64), for ``bits`` up to 60.

    Raises:
        ConfigError: a non-finite value or ``|x| >= 2^(62 - bits)``.
    """
    if not 0 <= bits <= 60:
        raise ConfigError("scale bits must be in [0, 60]")
    values = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ConfigError("cannot encode a non-finite value")
    scaled = np.rint(values * 2.0**bits)
    if scaled.size and float(np.max(np.abs(scaled))) >= 2.0**fixedpoint.MAX_ENCODED_BITS:
        raise ConfigError(f"value out of the fixed-point range (|x| < 2^{fixedpoint.MAX_ENCODED_BITS - bits})")
    return scaled.astype(np.int64).view(np.uint64)


def decode_scaled(x: np.ndarray, bits: int) -> np.ndarray:
    """Ring elements (uint64, two's complement) to ``signed(x) / 2^bits`` (float64)."""
    return np.asarray(x, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**bits


def decode(packed: np.ndarray, spec: ModelSpec, frac_bits: int) -> Model:
    """A plaintext model from its packed ring encoding (uint64)."""
    f = fixedpoint.check_frac_bits(frac_bits)
    arr = np.asarray(packed, dtype=np.uint64).reshape(-1)
    if arr.shape != (spec.size,):
        raise ConfigError(f"a packed model of {spec.size} elements expected")
    parts: dict[str, np.ndarray] = {}
    pos = 0
    for name, shape, mult in spec.layout():
        n = int(np.prod(shape))
        parts[name] = decode_scaled(arr[pos : pos + n], mult * f).reshape(shape)
        pos += n
    k = len(spec.sizes) - 1
    mean = parts.get("mean")
    scale = 1.0 / parts["inv_scale"] if "inv_scale" in parts else None
    return Model(tuple(parts[f"W{i}"] for i in range(k)), tuple(parts[f"b{i}"] for i in range(k)), mean, scale)
