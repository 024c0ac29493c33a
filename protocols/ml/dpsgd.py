"""DP-SGD inside MPC: logistic regression whose revealed model is (epsilon, delta)-DP.

The training of :mod:`protocols.ml.logreg` (horizontal partition, the clipped-linear sigmoid),
with three changes that make the released weights differentially private against any
coalition of parties, including all but one:

1. *Per-example clipping without secret square roots.* For logistic regression the gradient
   of one example is ``g_i = (act(x_i . w) - y_i) x_i`` (``x_i`` with the intercept column),
   and ``|act - y| <= 1``, so ``||g_i|| <= ||x_i||``. Each data owner therefore scales its own
   rows ``[x_i, 1]`` (intercept included) to L2 norm at most ``C`` *before* input
   (:func:`clip_rows`; locally, in the clear, on its own data). The bound is kept with margin
   for the fixed point: the activation of the MPC is within ``[-2^-6, 1 + 2^-6]`` (the window
   test may pick either side within ``2^-4`` of ``z = +-2``, the truncation moves it by
   ``2^-16``) and every coordinate is rounded to ``2^-x_bits``, so rows are scaled to
   ``C / (1 + 2^-5) - sqrt(d + 1) 2^-(x_bits + 1)``: the encoded per-example gradient has norm
   at most ``C`` whatever the weights.
2. *A sigmoid whose output stays in range for any logit.* The activation of
   :func:`~protocols.ml.activation.sigmoid_clip` is ``(b2 - b1) u + 1 - b2`` with ``b1 = [z <
   -2]``, ``b2 = [z < 2]`` and ``u = z / 4 + 1/2``; a logit outside the fixed-point range
   (``|z| >= 2^10``; a coalition can push the weights there with rows of its own) may give the
   impossible pair ``b1 = 1, b2 = 0`` and an unbounded activation ``1 - u``. Here ``s = (1 -
   b1) (b2 u + 1 - b2)`` (``sigmoid_clip(..., bounded=True)``: one more product, one more
   round): ``s = u`` only if ``b1 = 0`` and ``b2 = 1``, i.e. if ``z`` read as a signed 64-bit
   integer lies in ``[-2, 2)`` (up to ``2^-4``; neither test can wrap there), where ``u`` is
   in range; otherwise ``s`` is 0 or 1. So the bound of step 1 holds for every honest row
   against any inputs of the coalition.
3. *Noise that no party knows.* For every step and every coordinate of the summed batch
   gradient, ``K`` of the engine's preprocessed random bits (``bits``, MAC-authenticated,
   uniform and unknown to any coalition missing one party) are summed locally: ``sum - K / 2``
   is centred binomial noise of variance ``K / 4``. It is multiplied by the public integer
   ``m = ceil(2 sigma C / sqrt(K) 2^(x_bits + f))`` (:func:`noise_unit`) and added to the
   summed gradient (scale ``x_bits + f``) before the weight update: a standard deviation of
   ``m sqrt(K) / 2 >= sigma C`` in gradient units. The noisy sums are never opened; only the
   final weights are revealed (to ``receivers``), a post-processing of the noisy trajectory.

Accounting (:func:`planned_epsilon`). Neighbouring datasets differ by *replacing* one row (its
features and label) of one party; the row counts, the hyper-parameters and the batch order are
public (a public shuffle per epoch, fixed-size batches). Replacing a row changes the summed
gradient of the one step of each epoch that contains it by at most ``2 C`` in L2 norm (and
no other step, given the previous weights). Each such step is treated as a Gaussian mechanism
with noise ``sigma C`` and sensitivity ``2 C`` (noise multiplier ``sigma / 2``), *without* any
amplification by sampling (conservative: the batch order is public); the ``epochs`` steps a
row takes part in are composed with the PLD accountant of ``dp_accounting``. ``n_rows`` and
the batch size do not enter. The binomial noise is accounted *as a Gaussian of the same
variance*: this is an approximation, not a proof. ``K`` is chosen
(:func:`noise_bits_for`) so that the binomial mechanism is in the regime of the binomial
mechanism's analysis of Agarwal, Suresh, Yu, Kumar, McMahan, "cpSGD: Communication-efficient
and differentially-private distributed SGD" (NeurIPS 2018): variance ``K / 4 >= 23
ln(10 (d + 1) / delta)`` and ``K / 4 >= 2 Delta_inf / s`` (``Delta_inf = 2 C``, ``s`` the noise
unit ``2 sigma C / sqrt(K)``, i.e. ``K >= 64 / sigma^2``); the extra epsilon terms of that
analysis are *not* charged. With a real Gaussian in place of the binomial the figure would be
exact for this mechanism.

Threat model: the engine's (:mod:`protocols.spdz.engine`): active adversary corrupting up to
``n - 1`` of ``n`` parties, security with abort, given secure preprocessing whose ``bits`` are
uniform bits unknown to the coalition (the dealer-free provider of
:mod:`protocols.spdz_offline`; the InsecureDealer knows them: tests only). The MPC reveals
nothing but the weights (to the receivers); the DP guarantee covers the rows of every honest
party against a coalition that sees the released weights, its own data and its view of the
protocol (uniformly masked openings), whatever rows and labels the coalition inputs: the
honest rows are clipped by their owners and the activation is bounded for any logit (step 2).
Not protected: the public row counts per party; the choice to abort (only before output).
Not supported: the vertical partition (the per-row norm spans several parties; raises
:class:`~mpc.errors.ConfigError`) and the pooled standardization of ``logreg`` (it reveals
exact pooled means and standard deviations, which are not DP; scale the features with public
constants instead: ``params.standardize`` must be ``False``).

Fixed-point error: as :mod:`protocols.ml.logreg` (weights within ~5e-4 of float training on
the same clipped rows over the tests' steps, activation within ``2^-6`` near ``z = +-2``); the
noise is exact integers times ``m`` (relative rounding of the scale below ``2^-20``).

Cost per batch of ``b`` rows (``d1 = d + 1``): 7 rounds (matrix product, the 5-round bounded
sigmoid of :func:`~protocols.ml.activation.sigmoid_clip_steps`, the backward product). Bytes
per party to each peer: ``16 (b d1 + d1) + 16 (63 b) + 16 (d1 b + b)``; the noise is local.
Preprocessing per batch (:func:`dp_requirements`, exact): 2 matrix triples, the bounded
sigmoid's (:func:`~protocols.ml.activation.sigmoid_clip_cost`) and ``K d1`` bits (the noise;
none when ``sigma = 0``); per row ``d1 + 1`` input masks at its owner; ``d1`` truncation
pairs once at the end; no standardization.

Papers: Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016: DP-SGD);
Agarwal et al., "cpSGD" (NeurIPS 2018: the binomial mechanism); Mohassel, Zhang, "SecureML"
(S&P 2017); Cramer et al., "SPDZ2k" (CRYPTO 2018).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any, Callable, Sequence

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError
from mpc.session import Session
from protocols import spdz
from protocols.ml.activation import sigmoid_clip, sigmoid_clip_cost
from protocols.ml.data import batch_order, batches
from protocols.ml.fixed import raw_product, reinterpret, truncate
from protocols.ml.logreg import (
    Z_SCALE,
    EpochStats,
    Scales,
    TrainParams,
    TrainResult,
    _call_progress,
    _check_features,
    _check_labels,
    _encode_block,
    _output,
    step_constant,
)
from protocols.ml.model import ModelSpec, SecretModel
from protocols.ml.reference import activation
from protocols.spdz.array import SecretArray, concatenate
from protocols.spdz.preprocessing import Requirements, reveal_cost

__all__ = [
    "ACTIVATION_SLACK",
    "binomial_noise",
    "clip_rows",
    "clipped_norm",
    "dp_requirements",
    "noise_bits_for",
    "noise_unit",
    "planned_epsilon",
    "train_logreg_dp",
    "train_plain_clipped",
]

Progress = Callable[[float, str], Any]

ACTIVATION_SLACK = 2.0**-5
"""``|act - y| <= 1 + ACTIVATION_SLACK`` for the MPC activation (``2^-6 + 2^-16`` with margin)."""

MIN_NOISE_BITS = 16
"""The smallest ``K`` accepted (tests of the generator); :func:`noise_bits_for` picks more."""

MAX_NOISE_BITS = 1 << 16
"""The largest ``K`` accepted (``K d1`` bits per step are consumed)."""


# -- public, plaintext helpers --------------------------------------------------------------------


def _check_dp(clip: float, noise_multiplier: float, delta: float) -> tuple[float, float, float]:
    c, s, dl = float(clip), float(noise_multiplier), float(delta)
    if not (math.isfinite(c) and 0 < c < 2**10):
        raise ConfigError("clip must be in (0, 1024)")
    if not (math.isfinite(s) and 0 <= s < 2**10):
        raise ConfigError("noise_multiplier must be in [0, 1024)")
    if not 0 < dl < 1:
        raise ConfigError("delta must be in (0, 1)")
    return c, s, dl


def _check_params(params: TrainParams) -> None:
    if not isinstance(params, TrainParams):
        raise ConfigError("params must be TrainParams")
    if params.standardize:
        raise ConfigError(
            "DP training needs standardize=False (the pooled statistics are not DP); scale features with public constants"
        )
    if params.sigmoid != "clip":
        raise ConfigError("DP training uses the clip sigmoid (its bound |act - y| <= 1 is what clipping relies on)")


def clipped_norm(clip: float, d1: int, x_bits: int) -> float:
    """The L2 norm rows are scaled to, so that the encoded per-example gradient stays below ``clip``.

    Raises:
        ConfigError: ``clip`` too small for the fixed point.
    """
    target = float(clip) / (1 + ACTIVATION_SLACK) - math.sqrt(d1) * 2.0 ** -(x_bits + 1)
    if target <= 0:
        raise ConfigError("clip is too small for the fixed-point resolution")
    return target


def clip_rows(x: np.ndarray, clip: float, x_bits: int) -> np.ndarray:
    """``[x | 1]`` with every row scaled to L2 norm at most :func:`clipped_norm` (float64, local).

    What each data owner does to its own rows before input (intercept column included).
    """
    arr = _check_features(x)
    xa = np.hstack([arr, np.ones((arr.shape[0], 1))])
    target = clipped_norm(clip, xa.shape[1], x_bits)
    norms = np.sqrt(np.sum(xa * xa, axis=1, keepdims=True))
    return xa * np.minimum(1.0, target / norms)  # norms >= 1 (the intercept)


def noise_bits_for(d1: int, noise_multiplier: float, delta: float) -> int:
    """The default ``K`` (bits per noise sample): see the module docstring (a multiple of 16).

    ``K >= max(92 ln(10 d1 / delta), 64 / sigma^2, 1024)``, capped at :data:`MAX_NOISE_BITS`.

    Raises:
        ConfigError: ``sigma`` so small that ``K`` would exceed the cap.
    """
    if d1 < 1:
        raise ConfigError("d1 must be positive")
    s = float(noise_multiplier)
    if s <= 0:
        return 0
    need = max(92 * math.log(10 * d1 / float(delta)), 64 / (s * s), 1024.0)
    k = 16 * math.ceil(need / 16)
    if k > MAX_NOISE_BITS:
        raise ConfigError("noise_multiplier too small for the binomial noise (more than 2^16 bits per sample)")
    return k


def _check_noise_bits(k: int) -> int:
    k = check_int(k, "noise_bits", numpy=True)
    if k % 2 or not MIN_NOISE_BITS <= k <= MAX_NOISE_BITS:
        raise ConfigError(f"noise_bits must be even and in [{MIN_NOISE_BITS}, {MAX_NOISE_BITS}]")
    return k


def noise_unit(noise_multiplier: float, clip: float, noise_bits: int, scale_bits: int) -> int:
    """``m = ceil(2 sigma C / sqrt(K) 2^scale_bits)``: the public multiplier of ``sum(bits) - K / 2``.

    The noise ``m (sum - K / 2)`` has standard deviation ``m sqrt(K) / 2 >= sigma C 2^scale_bits``.

    Raises:
        ConfigError: the noise would not fit the ring (``m K / 2 >= 2^60``).
    """
    k = _check_noise_bits(noise_bits)
    s = float(noise_multiplier)
    if s == 0:
        return 0
    m = math.ceil(2 * s * float(clip) / math.sqrt(k) * 2.0**scale_bits)
    if m * k // 2 >= 1 << 60:
        raise ConfigError("the noise does not fit the fixed-point range")
    return m


def planned_epsilon(params: TrainParams, n_rows: int, batch_size: int, noise_multiplier: float, delta: float) -> float:
    """The epsilon :func:`train_logreg_dp` will charge (computable before the job).

    ``epochs`` Gaussian mechanisms of noise multiplier ``sigma / 2`` (replace-one adjacency,
    sensitivity ``2 C``, no amplification), composed by ``dp_accounting``'s PLD accountant.
    ``n_rows`` and ``batch_size`` are validated but do not change the figure (each row is in
    exactly one batch per epoch). ``inf`` when ``sigma = 0``.

    Raises:
        ConfigError: invalid parameters, or ``batch_size`` differing from ``params``.
    """
    if not isinstance(params, TrainParams):
        raise ConfigError("params must be TrainParams")
    _check_dp(1.0, noise_multiplier, delta)
    check_int(n_rows, "n_rows", lo=1, numpy=True)
    if batch_size != params.batch_size:
        raise ConfigError("batch_size differs from params.batch_size")
    s = float(noise_multiplier)
    if s == 0:
        return math.inf
    import dp_accounting  # local: only the accounting needs it
    from dp_accounting.pld import PLDAccountant

    accountant = PLDAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(s / 2), int(params.epochs))
    return float(accountant.get_epsilon(float(delta)))


def train_plain_clipped(x: np.ndarray, y: np.ndarray, params: TrainParams, clip: float, frac_bits: int = 16) -> np.ndarray:
    """Float64 training on the clipped rows, without noise: the yardstick of the MPC at ``sigma = 0``.

    ``x`` in the global row order (party 0's rows, then party 1's...), features only; returns
    ``w`` (``d + 1``, bias last) for the unclipped inputs ``[x | 1]`` of inference.
    """
    scales = Scales.choose(frac_bits, params.learning_rate, params.batch_size)
    xa = clip_rows(x, clip, scales.x_bits)
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    w = np.zeros(xa.shape[1])
    for order in batch_order(xa.shape[0], params.epochs, params.seed):
        for idx in batches(order, params.batch_size):
            xb = xa[idx]
            err = activation(xb @ w, "clip") - yv[idx]
            w = w - (params.learning_rate / idx.size) * (xb.T @ err)
    return w


# -- the protocol -----------------------------------------------------------------------------------


def binomial_noise(session: Session, shape: tuple[int, ...], noise_bits: int, unit: int) -> SecretArray:
    """``unit (sum of K secret bits - K / 2)`` per element: centred binomial, variance ``unit^2 K / 4``.

    Local (no round): consumes ``K * prod(shape)`` of the engine's authenticated ``bits``,
    drawn when this is called (every party calls it at the same point of the program).
    """
    k = _check_noise_bits(noise_bits)
    check_int(unit, "unit", lo=1, hi=(1 << 60) - 1, numpy=True, message="the noise unit must be a positive integer below 2^60")
    if unit * k // 2 >= 1 << 60:
        raise ConfigError("the noise does not fit the fixed-point range")
    eng = spdz.engine_of(session)
    bits = eng.prep.bits((k, *shape))
    count = eng.concrete(bits.sum(axis=0), 0)  # sum of K bits, local
    return (count - k // 2) * int(unit)


def _dp_step(
    xb: SecretArray, yb: SecretArray, w: SecretArray, noise: SecretArray | None, params: TrainParams, scales: Scales
) -> SecretArray:
    """``w - (lr / |B|) (X_B^T (act(X_B w) - y_B) + noise)`` with the robust activation (recorded)."""
    z = raw_product("matmul", xb, w)  # scale Z_SCALE
    s = sigmoid_clip(z, Z_SCALE, bounded=True)  # (1 - b1) (b2 u + 1 - b2): in [0, 1] for any z
    g = raw_product("matmul", xb.T, s - yb)  # scale x_bits + f
    if noise is not None:
        g = g + noise
    return w - g * step_constant(params.learning_rate, xb.shape[0], scales.step_bits)


async def train_logreg_dp(
    session: Session,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    params: TrainParams,
    clip: float,
    noise_multiplier: float,
    delta: float,
    receivers: Sequence[int | str] = (),
    progress: Progress | None = None,
    partition: str = "horizontal",
    noise_bits: int | None = None,
) -> tuple[TrainResult, float]:
    """DP-SGD logistic regression on rows split across parties (every party calls this).

    Args:
        session: this party's session, with the SPDZ engine set up.
        features: this party's rows (``n_j x d``), scaled with public constants.
        labels: their 0/1 labels.
        params: public hyper-parameters (``standardize=False``, ``sigmoid="clip"``).
        clip: ``C``, the L2 bound of a per-example gradient.
        noise_multiplier: ``sigma``: the noise per coordinate of a summed gradient has standard
            deviation ``sigma C`` (at least).
        delta: the delta of the reported epsilon.
        receivers: names or ids of the parties that learn the weights (empty: nobody).
        progress: called after each epoch as ``progress(fraction_done, label)`` (may return
            an awaitable).
        partition: only ``"horizontal"``.
        noise_bits: ``K`` (default :func:`noise_bits_for`); every party must pass the same.

    Returns:
        This party's :class:`~protocols.ml.logreg.TrainResult` (weights for the clipped-row
        features, no standardization) and the epsilon of :func:`planned_epsilon`.

    Raises:
        ConfigError: invalid data or parameters, a vertical partition, parties' shapes that do
            not fit together.
        MacCheckFailure, ProtocolViolation, PeerUnavailable: from the engine.
    """
    if partition != "horizontal":
        raise ConfigError("DP training supports the horizontal partition only")
    _check_params(params)
    clip, sigma, delta = _check_dp(clip, noise_multiplier, delta)
    eng = spdz.engine_of(session)
    f = eng.frac_bits
    scales = Scales.choose(f, params.learning_rate, params.batch_size)
    to = sorted({session.party_index(r) for r in receivers})
    x = _check_features(features)
    y = _check_labels(labels, x.shape[0])
    d = x.shape[1]
    d1 = d + 1
    k = (noise_bits_for(d1, sigma, delta) if noise_bits is None else _check_noise_bits(noise_bits)) if sigma else 0
    unit = noise_unit(sigma, clip, k, scales.x_bits + f) if sigma else 0
    parts = await spdz.input_all(session, _encode_block(clip_rows(x, clip, scales.x_bits), y, scales))
    for j, p in enumerate(parts):
        if p.ndim != 2 or p.shape[1] != d1 + 1 or p.is_fixed:
            raise ConfigError(f"party {session.parties[j]} has {p.shape[-1] - 2} features, this party {d}")
    data = concatenate(parts, axis=0)
    n_rows = data.shape[0]
    xa, yv = data[:, :d1], reinterpret(data[:, d1], f)
    epsilon = planned_epsilon(params, n_rows, params.batch_size, sigma, delta)

    w = spdz.constant(session, np.zeros(d1, dtype=np.int64), 0)  # scale w_bits
    stats: list[EpochStats] = []
    for epoch, order in enumerate(batch_order(n_rows, params.epochs, params.seed)):
        start, rounds0, bytes0 = time.perf_counter(), session.stats.rounds, session.stats.bytes_sent
        for idx in batches(order, params.batch_size):
            noise = binomial_noise(session, (d1,), k, unit) if unit else None
            w = _dp_step(xa[idx], yv[idx], w, noise, params, scales)
            await eng.flush()
        stats.append(
            EpochStats(epoch, time.perf_counter() - start, session.stats.rounds - rounds0, session.stats.bytes_sent - bytes0)
        )
        pending = _call_progress(progress, (epoch + 1) / params.epochs, f"epoch {epoch + 1}/{params.epochs}")
        if inspect.isawaitable(pending):
            await pending

    w = truncate(w, scales.w_bits - f)
    secret = SecretModel(ModelSpec((d, 1), False), (w[:d].reshape(d, 1),), (w[d:],), None, None)
    model = await _output(session, secret, w, to, None)
    if not to:
        await eng.check()
    return TrainResult(model, None, secret, tuple(stats), n_rows, d), epsilon


def dp_requirements(
    params: TrainParams,
    *,
    rows: Sequence[int],
    columns: Sequence[int],
    clip: float,
    noise_multiplier: float,
    delta: float,
    receivers: Sequence[int] = (),
    noise_bits: int | None = None,
    frac_bits: int = 16,
    prep: object = None,
) -> Requirements:
    """The preprocessing :func:`train_logreg_dp` consumes, exactly (reserve it before the job).

    Args:
        params, clip, noise_multiplier, delta, noise_bits: as for :func:`train_logreg_dp`.
        rows: per party, its row count; columns: per party, its feature count (all equal).
        receivers: ids of the receivers of the weights.
        frac_bits: the engine's ``f``.
        prep: the provider (or its class) that will serve the job.

    The noise alone is ``K (d + 1)`` bits per batch (``epochs * ceil(N / batch_size)`` batches).
    """
    _check_params(params)
    clip, sigma, delta = _check_dp(clip, noise_multiplier, delta)
    n = len(rows)
    if len(columns) != n or n < 1 or len(set(columns)) != 1:
        raise ConfigError("rows and columns need one entry per party, with equal column counts")
    d1 = columns[0] + 1
    n_rows = sum(rows)
    f = frac_bits
    scales = Scales.choose(f, params.learning_rate, params.batch_size)
    clipped_norm(clip, d1, scales.x_bits)
    k = (noise_bits_for(d1, sigma, delta) if noise_bits is None else _check_noise_bits(noise_bits)) if sigma else 0
    need = Requirements(input_masks={j: rows[j] * (d1 + 1) for j in range(n) if rows[j]})
    need += Requirements(truncation_pairs={scales.w_bits - f: d1})
    for order in batch_order(n_rows, params.epochs, params.seed):
        for idx in batches(order, params.batch_size):
            b = idx.size
            need += Requirements(matrix_triples={(b, d1, 1): 1, (d1, b, 1): 1})
            need += sigmoid_clip_cost(b, Z_SCALE, f, prep=prep, bounded=True)
            need += Requirements(bits=k * d1)
    return need + reveal_cost(d1, receivers, n)
