"""Machine learning on secret-shared data across parties: training and inference on SPDZ2k.

Built on the SPDZ2k engine (:mod:`protocols.spdz`): every party runs the same program with its
own session and its part of the data; the engine's security model applies throughout (active
adversary, up to ``n - 1`` of ``n`` parties corrupted, security with abort; every opened value
MAC-checked before any output), given secure preprocessing (the dealer-free provider of
:mod:`protocols.spdz_offline` for real jobs; the InsecureDealer only in tests and online-phase
benchmarks).

- :func:`train_logreg` (:mod:`.logreg`): logistic regression by mini-batch gradient descent on
  rows (horizontal) or columns (vertical) split across parties; weights revealed only to the
  named receivers, or kept secret-shared (:class:`ModelShares`). 6 rounds per batch (one matrix
  product forward, one backward, and the clipped sigmoid in 4: a windowed threshold test whose
  last carry level also multiplies by ``z / 4 + 1/2``, :mod:`.activation`; the weights are
  never truncated).
- :func:`predict` (:mod:`.inference`): a secret model (held by one party, secret-shared, or
  secret in this job) applied to one party's secret rows; logistic regression and ReLU
  networks (exact comparisons); outputs only to the requesting party.
- :func:`train_requirements`, :func:`predict_requirements`: the exact preprocessing to reserve
  (or produce dealer-free) before a job; :func:`exchange_shapes`: the parties' public data
  shapes they need (one round).
- :mod:`.reference`: the float64 training with the same hyper-parameters and batch order (the
  yardstick of tests, benchmarks and the demo); :mod:`.data`: public helpers (batch order,
  standardization statistics, partitions).

Usage (every party)::

    from protocols import ml, spdz

    spdz.setup(session, provider)          # provider reserved with ml.train_requirements(...)
    result = await ml.train_logreg(session, my_rows, my_labels, partition="horizontal",
                                   params=ml.TrainParams(epochs=10), receivers=["hospital-a"])
    probs = await ml.predict(session, patients, result.model, spec=ml.ModelSpec((30, 1)),
                             data_owner="hospital-b", model_owner="hospital-a")

Papers: Mohassel, Zhang, "SecureML: A System for Scalable Privacy-Preserving Machine Learning"
(S&P 2017); Cramer, Damgard, Escudero, Scholl, Xing, "SPDZ2k" (CRYPTO 2018); Damgard,
Escudero, Frederiksen, Keller, Scholl, Volgushev, "New Primitives for Actively-Secure MPC over
Rings with Applications to Private Machine Learning" (S&P 2019).
"""

from __future__ import annotations

from protocols.ml.dpsgd import dp_requirements, planned_epsilon, train_logreg_dp
from protocols.ml.inference import input_model, predict, predict_requirements, secret_logits
from protocols.ml.logreg import (
    EpochStats,
    Partition,
    TrainParams,
    TrainResult,
    exchange_shapes,
    train_logreg,
    train_requirements,
)
from protocols.ml.model import Model, ModelShares, ModelSpec, SecretModel, decode, encode
from protocols.ml.reference import accuracy, train_plain

__all__ = [
    "dp_requirements",
    "planned_epsilon",
    "train_logreg_dp",
    "EpochStats",
    "Model",
    "ModelShares",
    "ModelSpec",
    "Partition",
    "SecretModel",
    "TrainParams",
    "TrainResult",
    "accuracy",
    "decode",
    "encode",
    "exchange_shapes",
    "input_model",
    "predict",
    "predict_requirements",
    "secret_logits",
    "train_logreg",
    "train_plain",
    "train_requirements",
]
