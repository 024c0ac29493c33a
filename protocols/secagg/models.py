"""Small numpy models for federated averaging: logistic regression and a one-hidden-layer MLP.

Parameters are one flat float64 vector (what secure aggregation sums). Loss: mean binary
cross-entropy; local training is full-batch gradient descent, deterministic given the data, so
a plaintext reference run reproduces a secure run bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mpc.errors import ConfigError
from mpc.prg import PRG

__all__ = ["ModelSpec", "local_train"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class ModelSpec:
    """A model's architecture.

    Attributes:
        kind: ``"logreg"`` or ``"mlp"`` (tanh hidden layer, sigmoid output).
        n_features: input features.
        hidden: hidden units of the MLP.
    """

    kind: Literal["logreg", "mlp"]
    n_features: int
    hidden: int = 16

    def __post_init__(self) -> None:
        if self.kind not in ("logreg", "mlp"):
            raise ConfigError(f"unknown model kind {self.kind!r}")
        if self.n_features < 1 or self.hidden < 1:
            raise ConfigError("n_features and hidden must be positive")

    @property
    def size(self) -> int:
        """Number of parameters."""
        d, h = self.n_features, self.hidden
        return d + 1 if self.kind == "logreg" else d * h + 2 * h + 1

    def init(self, public_seed: bytes) -> np.ndarray:
        """Initial parameters: zeros for logistic regression; for the MLP, Glorot-uniform
        weights from a public seed (every party derives the same)."""
        if self.kind == "logreg":
            return np.zeros(self.size)
        d, h = self.n_features, self.hidden
        prg = PRG.derive(public_seed, "fedavg-init")
        u = (prg.uint64(d * h + h) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        limit1, limit2 = math.sqrt(6.0 / (d + h)), math.sqrt(6.0 / (h + 1))
        out = np.zeros(self.size)
        out[: d * h] = (2 * u[: d * h] - 1) * limit1
        out[d * h + h : d * h + 2 * h] = (2 * u[d * h :] - 1) * limit2
        return out

    def _unpack(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        d, h = self.n_features, self.hidden
        if params.shape != (self.size,):
            raise ConfigError(f"parameters must have shape ({self.size},)")
        w1 = params[: d * h].reshape(d, h)
        b1 = params[d * h : d * h + h]
        w2 = params[d * h + h : d * h + 2 * h]
        return w1, b1, w2, float(params[-1])

    def predict_proba(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        """P(y = 1 | x) for each row of ``x``."""
        if self.kind == "logreg":
            return _sigmoid(x @ params[:-1] + params[-1])
        w1, b1, w2, b2 = self._unpack(params)
        return _sigmoid(np.tanh(x @ w1 + b1) @ w2 + b2)

    def gradient(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gradient of the mean binary cross-entropy at ``params``."""
        m = x.shape[0]
        if self.kind == "logreg":
            err = (_sigmoid(x @ params[:-1] + params[-1]) - y) / m
            return np.concatenate([x.T @ err, [err.sum()]])
        w1, b1, w2, b2 = self._unpack(params)
        hidden = np.tanh(x @ w1 + b1)
        err = (_sigmoid(hidden @ w2 + b2) - y) / m
        d_pre = np.outer(err, w2) * (1.0 - hidden * hidden)
        return np.concatenate([(x.T @ d_pre).reshape(-1), d_pre.sum(axis=0), hidden.T @ err, [err.sum()]])

    def accuracy(self, params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction of rows classified correctly (threshold 1/2)."""
        if len(y) == 0:
            raise ConfigError("accuracy of an empty set")
        return float(np.mean((self.predict_proba(params, x) >= 0.5) == (y >= 0.5)))


def local_train(
    spec: ModelSpec, params: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, lr: float
) -> np.ndarray:
    """``steps`` full-batch gradient-descent steps from ``params``; returns new parameters."""
    w = np.array(params, dtype=np.float64, copy=True)
    for _ in range(steps):  # a loop over optimisation steps, each vectorized
        w -= lr * spec.gradient(w, x, y)
    return w
