"""Plaintext float64 training with the hyper-parameters and batch order of the MPC training.

The yardstick of :func:`protocols.ml.logreg.train_logreg`: the same mini-batch gradient
descent, the same public batch order (:func:`protocols.ml.data.batch_order`), the same
activation (``"clip"``: ``clip(z / 4 + 1/2, 0, 1)``; ``"piecewise"``: the exact logistic
function, which the engine's piecewise sigmoid approximates within 2.5e-4), in float64 with no
fixed point. Tests and benchmarks compare the MPC model's accuracy with this one's; the demo
prints both.
"""

from __future__ import annotations

import numpy as np

from mpc.errors import ConfigError
from protocols.ml.data import batch_order, batches

__all__ = ["activation", "train_plain", "logits", "accuracy"]


def activation(z: np.ndarray, sigmoid: str) -> np.ndarray:
    """The float activation the MPC training approximates (see the module docstring)."""
    if sigmoid == "clip":
        return np.clip(z / 4 + 0.5, 0.0, 1.0)
    if sigmoid == "piecewise":
        return 0.5 * (1 + np.tanh(z / 2))
    raise ConfigError(f"unknown sigmoid {sigmoid!r}")


def train_plain(
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    sigmoid: str = "clip",
) -> np.ndarray:
    """Mini-batch gradient descent on the logistic loss; returns ``w`` (``d + 1``, bias last).

    ``x`` is the (already standardized) ``(N, d)`` feature matrix in the global row order of the
    MPC job, ``y`` the 0/1 labels. Each step: ``w -= (lr / |B|) X_B^T (act(X_B w) - y_B)`` with
    the intercept as a constant-1 column.
    """
    xa = np.hstack([np.asarray(x, dtype=np.float64), np.ones((x.shape[0], 1))])
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    w = np.zeros(xa.shape[1])
    for order in batch_order(xa.shape[0], epochs, seed):
        for idx in batches(order, batch_size):
            xb = xa[idx]
            err = activation(xb @ w, sigmoid) - yv[idx]
            w = w - (learning_rate / idx.size) * (xb.T @ err)
    return w


def logits(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w[:-1] + w[-1]``."""
    return np.asarray(x, dtype=np.float64) @ w[:-1] + w[-1]


def accuracy(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Fraction of rows whose predicted class (logit > 0) equals the label."""
    return float(np.mean((logits(x, w) > 0).astype(np.int64) == np.asarray(y).reshape(-1).astype(np.int64)))
