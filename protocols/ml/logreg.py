"""Logistic regression trained on secret-shared data (SPDZ2k), rows or columns split across parties.

Every party runs :func:`train_logreg` with its own part of the data. The features and labels are
secret-shared once (one input round), then mini-batch gradient descent runs entirely on shares;
the weights are revealed only to the named receivers (MAC-checked), or kept secret-shared.

Partitions:

- ``"horizontal"``: party ``j`` holds ``n_j`` complete rows and their labels; the global row
  order is party 0's rows, then party 1's, ...
- ``"vertical"``: every party holds some feature columns of the same ``N`` aligned rows (e.g.
  after a PSI private join); ``label_owner`` holds the labels. The feature order is party 0's
  columns, then party 1's, ...

Recipe (``d`` features, ``d1 = d + 1`` with the intercept, ``f`` the engine's fractional bits;
the scales of :class:`Scales`: ``X`` with ``x_bits``, the weights with ``w_bits = 52 -
x_bits``, for ``lr / |B| = 2^-7`` and ``f = 16``: 11 and 41):

1. *Standardize* (``params.standardize``). Vertical: each party scales its own columns to mean
   0 and variance 1 locally and later secret-shares its ``mean`` and ``2^(2f) / scale``.
   Horizontal: two passes of pooled sums (count, per-column sums and sums of squares, then
   the sums of the roughly standardized values and their squares; one input round and one
   reveal each), revealed to every party (MAC-checked); every party scales its rows with the
   pooled mean and standard deviation.
2. *Input* every party's block in one round, features at ``x_bits`` and labels (an extra
   column) at ``f``, as integers; assemble the ``(N, d1)`` matrix ``[X | 1]`` and ``y`` (local).
3. *Train*: ``w = 0`` (at ``w_bits``); for each epoch, for each batch ``B`` of the public order
   (:func:`protocols.ml.data.batch_order`): gather ``X_B`` (local), then

   - ``z = X_B w`` by one matrix Beaver product, untruncated: scale ``x_bits + w_bits = 52``;
   - ``sigmoid="clip"``: ``s = clip(z / 4 + 1/2, 0, 1)`` by :func:`~protocols.ml.activation.sigmoid_clip`
     (4 rounds): ``[z < -2]`` and ``[z < 2]`` by one windowed threshold test on one masked
     opening of ``z``, in parallel ``u = z / 4 + 1/2`` by one truncation by ``52 - f + 2``
     bits, and ``s = ([z < 2] - [z < -2]) u + 1 - [z < 2]`` fused into the test's last carry
     level by degree-3 product tuples (made from triples in the test's first round), so the
     product by ``u`` costs no round of its own. ``sigmoid="piecewise"``: truncate ``z`` to
     ``f`` bits and apply the engine's piecewise sigmoid (9 rounds);
   - ``g = X_B^T (s - y_B)`` by one matrix Beaver product, untruncated (scale ``x_bits + f``),
     times the public integer ``c = round(2^(w_bits - x_bits - f) lr / |B|)`` (local):
     ``w <- w - c g`` is at scale ``w_bits`` again, so the weights are never truncated.

   Each batch is recorded lazily and run by one engine flush, so the rounds are those of its
   dependency chain: 6 per batch with ``"clip"`` (1 + 4 forward, 1 backward), 12 with
   ``"piecewise"`` (1 + 1 + 9 forward, 1 backward).
4. *Output*: the weights truncated to ``f`` bits (one round) and revealed to ``receivers``
   only (vertically with each party's standardization), after the batched MAC check of
   everything opened; or (``keep_shared``) each party's additive share of the packed model
   (:class:`~protocols.ml.model.ModelShares`), after a MAC check.

Security: the engine's (:mod:`protocols.spdz.engine`): active adversary corrupting up to
``n - 1`` parties, security with abort, given secure preprocessing. What is public: the
partition, every party's row and column counts, the hyper-parameters and the batch order (a
public function of the public seed: it is data-independent). Horizontal standardization
reveals to every party the pooled per-feature mean and standard deviation (nothing per party);
without ``standardize`` nothing but the output is revealed. Non-receivers learn nothing of the
weights: every value they see is a uniformly masked opening (``x - a`` of Beaver, ``c`` of a
truncation or of the window test) or their own share.

Fixed-point error: features are rounded to ``2^-x_bits`` (``2^-11`` of a standard deviation
by default), labels exact; the weights accumulate the exact products ``c X^T err``, so the
only rounding in a step is ``c`` (exact when ``lr / |B|`` is a power of two, as 0.5 / 64;
otherwise relative ``<= 2^-7``: ``c`` has at least 6 significant bits, 13 for the batch of 7
rows of the benchmark), the truncation of ``z / 4`` (one unit ``2^-f``) and the window test,
which may pick either side within ``2^-4`` of ``z = +-2`` (the activation then moves by at
most ``2^-6``). Over the 16 steps of the tests the weights stay within ~5e-4 of float64
training with the same activation and batch order (tests: accuracy within one percentage
point, weights within 0.02). Horizontal standardization: the pooled mean and scale are within
about ``n 2^-17 / N`` (relative) of the exact ones. Ranges: ``|z| < 2^10`` (``z`` has 52
fractional bits and must stay below ``2^62``), ``|w| < 2^(62 - w_bits)`` (``2^21``);
``lr / |B| >= 2^-14`` (else :class:`Scales` refuses: ``X`` would get fewer than 8 bits).

Cost per batch of ``b`` rows (``n`` parties, per party, to each peer; ``d1 = d + 1``), clip:
6 rounds; Beaver and truncation openings of ``16 (b d1 + d1) + 16 (61 b) + 16 (d1 b + b)``
bytes (forward product; the fused sigmoid: the window's mask, which is also the truncation's,
the product tuples' own masks, two carry levels, the fused level; backward product), 127 kB
for ``b = 64, d = 30`` (16 kB more per batch without comparison masks; half in the engine's
passive mode). Preprocessing per batch (:func:`train_requirements`, exact): 2 matrix triples
(``(b, d1, 1)``, ``(d1, b, 1)``), ``29 b`` triples, ``2 b`` random values and ``b``
comparison masks (or ``37 b`` triples, ``64 b`` bits and ``3 b`` random values); ``d1``
truncation pairs once at the end.

Papers: Mohassel, Zhang, "SecureML" (S&P 2017: fixed-point SGD on shares, the clipped linear
activation); Cramer et al., "SPDZ2k" (CRYPTO 2018); Damgard et al., "New Primitives for
Actively-Secure MPC over Rings" (S&P 2019: the comparisons used here).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

from mpc.checks import check_int
from mpc.errors import ConfigError, ProtocolViolation
from mpc.session import Session
from protocols import spdz
from protocols.spdz import compare as cmp
from protocols.spdz.array import SecretArray, concatenate
from protocols.spdz.preprocessing import Requirements, reveal_cost

from protocols.ml.activation import sigmoid_clip, sigmoid_clip_cost
from protocols.ml.data import batch_order, batches, column_stats, pooled_stats
from protocols.ml.fixed import raw_product, reinterpret, truncate
from protocols.ml.model import Model, ModelShares, ModelSpec, SecretModel, decode_scaled, encode_scaled

__all__ = [
    "TrainParams",
    "EpochStats",
    "TrainResult",
    "Partition",
    "train_logreg",
    "train_requirements",
    "exchange_shapes",
    "Scales",
    "PIECEWISE_PRODUCTS",
    "PIECEWISE_TRUNCATIONS",
]

Partition = Literal["horizontal", "vertical"]
Progress = Callable[[float, str], Any]

PIECEWISE_PRODUCTS = 22
"""Per element, the products of the engine's piecewise sigmoid besides its 4 comparisons."""

PIECEWISE_TRUNCATIONS = 24
"""Per element, the truncations of the engine's piecewise sigmoid."""


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters (public; every party must pass the same).

    Attributes:
        epochs: passes over the data.
        batch_size: rows per gradient step (the last batch of an epoch may be smaller).
        learning_rate: step size ``lr`` (the step is ``lr / |B|`` times the summed gradient).
        seed: seed of the public batch order.
        sigmoid: ``"clip"`` (``clip(z / 4 + 1/2, 0, 1)``, 5 rounds forward) or
            ``"piecewise"`` (the engine's accurate sigmoid, error 2.5e-4, 11 rounds forward).
        standardize: scale features to mean 0, variance 1 (see the module docstring).
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.5
    seed: int = 0
    sigmoid: str = "clip"
    standardize: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "seed"):
            check_int(getattr(self, name), name, numpy=True)
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be positive")
        lr = float(self.learning_rate)
        if not (np.isfinite(lr) and 0 < lr < 2**10):
            raise ConfigError("learning_rate must be in (0, 1024)")
        if self.sigmoid not in ("clip", "piecewise"):
            raise ConfigError("sigmoid must be 'clip' or 'piecewise'")

    def as_dict(self) -> dict[str, Any]:
        """A msgpack-friendly form (job parameters)."""
        return {
            "epochs": int(self.epochs),
            "batch_size": int(self.batch_size),
            "learning_rate": float(self.learning_rate),
            "seed": int(self.seed),
            "sigmoid": self.sigmoid,
            "standardize": bool(self.standardize),
        }

    @classmethod
    def from_dict(cls, d: Any) -> TrainParams:
        """Inverse of :meth:`as_dict` (missing keys take the defaults).

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        if not isinstance(d, dict):
            raise ConfigError("training parameters must be a mapping")
        unknown = set(d) - set(cls().as_dict())
        if unknown:
            raise ConfigError(f"unknown training parameters {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class EpochStats:
    """What one epoch cost this party (wall clock, rounds, bytes sent)."""

    epoch: int
    seconds: float
    rounds: int
    bytes_sent: int


@dataclass(frozen=True, eq=False)
class TrainResult:
    """One party's outcome of :func:`train_logreg`.

    Attributes:
        model: the trained model (weights in the standardized space, with the
            standardization) at a receiver; ``None`` elsewhere.
        shares: this party's additive share of the packed model when ``keep_shared``.
        secret: the model as secret arrays of this job (for inference in the same session).
        epochs: per-epoch cost at this party.
        n_rows, n_features: the public shape of the training data.
    """

    model: Model | None
    shares: ModelShares | None
    secret: SecretModel
    epochs: tuple[EpochStats, ...]
    n_rows: int
    n_features: int


# -- pure helpers -------------------------------------------------------------------------------

Z_SCALE = 52
"""Scale bits of the untruncated logits ``z = X w`` (``|z| < 2^10``; the window is bits 48..63)."""


@dataclass(frozen=True)
class Scales:
    """Fixed-point scales (bits) of the training, from the engine's ``f`` and ``lr / batch``.

    ``X`` is held with ``x_bits``; the weights with ``w_bits = Z_SCALE - x_bits``, so that
    ``z = X w`` has ``Z_SCALE`` bits; the step multiplies the untruncated ``X^T err``
    (``x_bits + f`` bits) by the public integer ``round(2^step_bits lr / |B|)``, where
    ``step_bits = w_bits - x_bits - f``: the weights never need a truncation.
    """

    f: int
    x_bits: int
    w_bits: int

    @property
    def step_bits(self) -> int:
        """Fractional bits of the step multiplier ``lr / |B|``."""
        return self.w_bits - self.x_bits - self.f

    @classmethod
    def choose(cls, f: int, learning_rate: float, batch_size: int) -> Scales:
        """The most precise ``X`` (at most ``f`` bits) leaving ``lr / batch`` at least 6 bits.

        Raises:
            ConfigError: ``lr / batch_size`` is too small for the budget (``X`` would get
                fewer than 8 bits).
        """
        exponent = -int(np.floor(np.log2(float(learning_rate) / batch_size)))  # lr/b in [2^-E, 2^-E+1)
        x_bits = min(f, (Z_SCALE - f - exponent - 6) // 2)
        if x_bits < 8:
            raise ConfigError("learning_rate / batch_size is too small for the fixed-point budget (>= 2^-14 needed)")
        return cls(f, x_bits, Z_SCALE - x_bits)


def _check_features(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError("features must be a 2-d array (rows x columns)")
    if not np.all(np.isfinite(arr)):
        raise ConfigError("features must be finite")
    return arr


def _check_labels(y: Any, rows: int) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64).reshape(-1)
    if arr.shape != (rows,):
        raise ConfigError(f"expected {rows} labels, got {arr.shape[0]}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ConfigError("labels must be 0 or 1")
    return arr


def step_constant(learning_rate: float, batch: int, step_bits: int) -> int:
    """``round(2^step_bits lr / |B|)``: the public integer multiplier of the summed gradient."""
    c = int(round(float(learning_rate) / batch * 2.0**step_bits))
    if c < 1:
        raise ConfigError("learning_rate / batch_size is below the fixed-point resolution")
    return c


def _call_progress(progress: Progress | None, fraction: float, label: str) -> Any:
    return None if progress is None else progress(fraction, label)


# -- the protocol -------------------------------------------------------------------------------


async def train_logreg(
    session: Session,
    features: np.ndarray | None,
    labels: np.ndarray | None,
    *,
    partition: Partition,
    params: TrainParams,
    receivers: Sequence[str | int] = (),
    keep_shared: bool = False,
    label_owner: str | int | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train logistic regression on the parties' data (every party calls it; see the module doc).

    The session must have an engine (``protocols.spdz.setup(session, provider)``); reserve
    :func:`train_requirements` on the provider first to keep preprocessing out of the epochs.

    Args:
        session: this party's session.
        features: horizontal: this party's rows ``(n_j, d)``; vertical: its columns
            ``(N, d_j)`` of the aligned rows (``(N, 0)`` or ``None`` for a party holding only
            the labels).
        labels: horizontal: the 0/1 labels of this party's rows; vertical: the ``N`` labels at
            ``label_owner``, ``None`` elsewhere.
        partition: ``"horizontal"`` or ``"vertical"``.
        params: the public hyper-parameters (identical at every party).
        receivers: party names or ids that learn the weights (empty: nobody).
        keep_shared: also return this party's additive share of the model.
        label_owner: vertical only: the party holding the labels.
        progress: called after each epoch as ``progress(fraction_done, label)`` (may return
            an awaitable, which is awaited).

    Returns:
        This party's :class:`TrainResult`.

    Raises:
        ConfigError: invalid local data or parameters, or parties' shapes that do not fit
            together (every party detects the latter alike).
        MacCheckFailure, ProtocolViolation, PeerUnavailable: from the engine.
    """
    if partition not in ("horizontal", "vertical"):
        raise ConfigError("partition must be 'horizontal' or 'vertical'")
    if not isinstance(params, TrainParams):
        raise ConfigError("params must be TrainParams")
    eng = spdz.engine_of(session)
    scales = Scales.choose(eng.frac_bits, params.learning_rate, params.batch_size)
    to = sorted({session.party_index(r) for r in receivers})
    if partition == "horizontal":
        if label_owner is not None:
            raise ConfigError("label_owner is for the vertical partition")
        x, y, mean, inv_scale, public_stats = await _assemble_horizontal(session, features, labels, params, scales)
    else:
        if label_owner is None:
            raise ConfigError("the vertical partition needs a label_owner")
        owner = session.party_index(label_owner)
        x, y, mean, inv_scale = await _assemble_vertical(session, features, labels, params, owner, scales)
        public_stats = None
    n_rows, d = x.shape
    ones = spdz.constant(session, np.full((n_rows, 1), 1 << scales.x_bits, dtype=np.int64), 0)
    xa = concatenate([x, ones], axis=1)  # integers at scale x_bits
    w = spdz.constant(session, np.zeros(d + 1, dtype=np.int64), 0)  # integers at scale w_bits

    stats: list[EpochStats] = []
    f = eng.frac_bits
    for epoch, order in enumerate(batch_order(n_rows, params.epochs, params.seed)):
        start, rounds0, bytes0 = time.perf_counter(), session.stats.rounds, session.stats.bytes_sent
        for idx in batches(order, params.batch_size):
            w = _gradient_step(xa[idx], y[idx], w, params, scales)
            await eng.flush()  # batches depend on each other: flushing each costs no round
        stats.append(
            EpochStats(epoch, time.perf_counter() - start, session.stats.rounds - rounds0, session.stats.bytes_sent - bytes0)
        )
        pending = _call_progress(progress, (epoch + 1) / params.epochs, f"epoch {epoch + 1}/{params.epochs}")
        if inspect.isawaitable(pending):
            await pending

    w = truncate(w, scales.w_bits - f)  # fixed point (f bits) for the output
    spec = ModelSpec((d, 1), params.standardize)
    secret = SecretModel(spec, (w[:d].reshape(d, 1),), (w[d:],), mean, inv_scale)
    model = await _output(session, secret, w, to, public_stats)
    shares = None
    if keep_shared:
        if not to:
            await eng.check()  # nothing revealed: check every opening before shares leave the job
        packed = secret.packed()
        await eng.flush()
        shares = ModelShares(spec, f, np.array(packed.shares().share.lo, dtype=np.uint64))
    elif not to:
        await eng.check()
    return TrainResult(model, shares, secret, tuple(stats), n_rows, d)


def _gradient_step(xb: SecretArray, yb: SecretArray, w: SecretArray, params: TrainParams, scales: Scales) -> SecretArray:
    """One mini-batch step ``w - (lr / |B|) X_B^T (sigmoid(X_B w) - y_B)`` (recorded, lazy).

    ``xb`` and ``w`` are integer arrays at scales ``x_bits`` and ``w_bits``; ``yb`` fixed point.
    """
    z = raw_product("matmul", xb, w)  # X_B w at scale Z_SCALE
    if params.sigmoid == "clip":
        s = sigmoid_clip(z, Z_SCALE)
    else:
        s = spdz.sigmoid(truncate(z, Z_SCALE - scales.f))
    g = raw_product("matmul", xb.T, s - yb)  # X_B^T (s - y_B) at scale x_bits + f
    return w - g * step_constant(params.learning_rate, xb.shape[0], scales.step_bits)  # scale w_bits


async def _assemble_horizontal(
    session: Session, features: Any, labels: Any, params: TrainParams, scales: Scales
) -> tuple[SecretArray, SecretArray, SecretArray | None, SecretArray | None, tuple[np.ndarray, np.ndarray] | None]:
    """Pooled standardization (optional) and input of every party's rows: ``X, y`` shared."""
    x = _check_features(features)
    y = _check_labels(labels, x.shape[0])
    d = x.shape[1]
    stats = None
    mean_s = inv_s = None
    if params.standardize:
        mean, scale = await _pooled_standardization(session, x)
        x = (x - mean) / scale
        stats = (mean, scale)
        f = spdz.engine_of(session).frac_bits
        mean_s = spdz.constant(session, mean)
        inv_s = spdz.constant(session, encode_scaled(1.0 / scale, 2 * f).view(np.int64))
    parts = await spdz.input_all(session, _encode_block(x, y, scales))
    for j, p in enumerate(parts):
        if p.ndim != 2 or p.shape[1] != d + 1 or p.is_fixed:
            raise ConfigError(f"party {session.parties[j]} has {p.shape[-1] - 1} features, this party {d}")
    data = concatenate(parts, axis=0)
    return data[:, :d], reinterpret(data[:, d], scales.f), mean_s, inv_s, stats


def _encode_block(x: np.ndarray, y: np.ndarray | None, scales: Scales) -> np.ndarray:
    """This party's input: features at ``x_bits``, then the labels (if any) at ``f`` (int64)."""
    cols = [encode_scaled(x, scales.x_bits).reshape(x.shape)]
    if y is not None:
        cols.append(encode_scaled(y, scales.f).reshape(-1, 1))
    return np.hstack(cols).view(np.int64)


async def _pooled_standardization(session: Session, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled per-column mean and standard deviation of every party's rows (revealed to all).

    Two passes, so that the fixed-point rounding of the sums (``2^-17`` per party) does not
    swamp small variances: the count, sums and sums of squares give a first ``(m1, s1)``; then
    the sums of ``u = (x - m1) / s1`` and ``u^2`` (of order ``N``, so their rounding is
    relatively ``~n 2^-17 / N``) refine them: ``mean = m1 + s1 mean(u)``,
    ``var = s1^2 (mean(u^2) - mean(u)^2)``.
    """
    d = x.shape[1]
    first = await _pooled_sums(session, np.concatenate([[float(x.shape[0])], x.sum(axis=0), (x * x).sum(axis=0)]))
    count = float(first[0])
    m1, s1 = pooled_stats(count, first[1 : d + 1], first[d + 1 :])
    u = (x - m1) / s1
    second = await _pooled_sums(session, np.concatenate([u.sum(axis=0), (u * u).sum(axis=0)]))
    mu = second[:d] / count
    std = s1 * np.sqrt(np.maximum(second[d:] / count - mu * mu, 0.0))
    return m1 + s1 * mu, np.where(std < 1e-6, 1.0, std)


async def _pooled_sums(session: Session, local: np.ndarray) -> np.ndarray:
    """Every party inputs ``local`` (one round); the total is revealed to all (MAC-checked)."""
    parts = await spdz.input_all(session, local)
    _same_shapes(session, [p.shape for p in parts], local.shape, "standardization sums")
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return np.asarray(await spdz.reveal(session, total), dtype=np.float64)


async def _assemble_vertical(
    session: Session, features: Any, labels: Any, params: TrainParams, owner: int, scales: Scales
) -> tuple[SecretArray, SecretArray, SecretArray | None, SecretArray | None]:
    """Local standardization and input of every party's columns (labels at ``owner``)."""
    mine = None if features is None else _check_features(features)
    if session.party_id == owner:
        if labels is None:
            raise ConfigError("the label owner must pass the labels")
        rows = len(np.asarray(labels).reshape(-1)) if mine is None else mine.shape[0]
        y = _check_labels(labels, rows)
        if mine is None:
            mine = np.zeros((rows, 0))
    elif labels is not None:
        raise ConfigError("only the label owner passes labels")
    if mine is None:
        raise ConfigError("a party of the vertical partition needs features (or the labels)")
    cols = mine.shape[1]
    f = spdz.engine_of(session).frac_bits
    if params.standardize and cols:
        mean, scale = column_stats(mine)
        mine = (mine - mean) / scale
    else:
        mean, scale = np.zeros(cols), np.ones(cols)
    parts = await spdz.input_all(session, _encode_block(mine, y if session.party_id == owner else None, scales))
    rows = {p.shape[0] for p in parts if p.ndim == 2}
    if len(rows) != 1 or any(p.ndim != 2 or p.is_fixed for p in parts):
        raise ConfigError("the parties of a vertical partition must hold the same number of rows")
    widths = [p.shape[1] - (1 if j == owner else 0) for j, p in enumerate(parts)]
    if widths[owner] < 0:
        raise ProtocolViolation("the label owner sent no label column")
    x = concatenate([p[:, : widths[j]] for j, p in enumerate(parts) if widths[j]], axis=1)
    y = reinterpret(parts[owner][:, widths[owner]], scales.f)
    mean_s = inv_s = None
    if params.standardize:
        enc = np.stack([encode_scaled(mean, f), encode_scaled(1.0 / scale, 2 * f)]).view(np.int64)
        st = await spdz.input_all(session, enc)
        _same_shapes(session, [p.shape for p in st], None, "standardization", [(2, wd) for wd in widths])
        mean_s = reinterpret(concatenate([p[0] for j, p in enumerate(st) if widths[j]]), f)
        inv_s = concatenate([p[1] for j, p in enumerate(st) if widths[j]])
    return x, y, mean_s, inv_s


def _same_shapes(
    session: Session,
    shapes: list[tuple[int, ...]],
    expected: tuple[int, ...] | None,
    what: str,
    per_party: list[tuple[int, ...]] | None = None,
) -> None:
    for j, shape in enumerate(shapes):
        want = expected if per_party is None else per_party[j]
        if shape != want:
            raise ConfigError(f"party {session.parties[j]} sent {what} of shape {shape}, expected {want}")


async def _output(
    session: Session,
    secret: SecretModel,
    w: SecretArray,
    to: list[int],
    public_stats: tuple[np.ndarray, np.ndarray] | None,
) -> Model | None:
    """Reveal the weights (and secret standardization) to ``to``; the model at receivers."""
    if not to:
        return None
    items = [w]
    if secret.mean is not None and secret.inv_scale is not None and public_stats is None:
        items += [secret.mean, secret.inv_scale]
    got = await spdz.reveal(session, items, to=to)
    if got is None:
        return None
    if len(items) == 1:
        mean, scale = public_stats if public_stats is not None else (None, None)
        return Model.logistic(got[0], mean, scale)
    f = spdz.engine_of(session).frac_bits
    inv = decode_scaled(np.asarray(got[2]).view(np.uint64), 2 * f)
    return Model.logistic(got[0], got[1], 1.0 / inv)


# -- preprocessing ------------------------------------------------------------------------------


async def exchange_shapes(session: Session, features: Any) -> tuple[list[int], list[int]]:
    """Every party's ``(rows, columns)`` of its features, in party order (one round).

    What :func:`train_requirements` and :func:`~protocols.ml.inference.predict_requirements`
    need before a job's preprocessing is produced. The shapes are public in these protocols
    anyway (the input round reveals them). A party without features (``None``) sends
    ``(0, 0)``.

    Raises:
        ConfigError: this party's features are not a 2-d array.
        ProtocolViolation: a peer sent something other than two non-negative integers.
    """
    if features is None:
        mine = [0, 0]
    else:
        shape = np.shape(features)
        if len(shape) != 2:
            raise ConfigError("features must be a 2-d array (rows x columns)")
        mine = [int(shape[0]), int(shape[1])]
    got = await session.exchange("ml-shapes", mine)
    got[session.party_id] = mine
    rows, cols = [], []
    for j in range(session.n_parties):
        v = got[j]
        bad = f"party {session.parties[j]} sent an invalid shape"
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ProtocolViolation(bad)
        r, c = (check_int(a, "shape", lo=0, error=ProtocolViolation, message=bad) for a in v)
        rows.append(r)
        cols.append(c)
    return rows, cols



def train_requirements(
    params: TrainParams,
    *,
    partition: Partition,
    rows: Sequence[int],
    columns: Sequence[int],
    label_owner: int | None = None,
    receivers: Sequence[int] = (),
    frac_bits: int = 16,
    prep: object = None,
) -> Requirements:
    """The preprocessing :func:`train_logreg` consumes (exactly; reserve it before the job).

    Args:
        params: the hyper-parameters.
        partition: ``"horizontal"`` or ``"vertical"``.
        rows: per party, its row count (vertical: ``N`` for every party).
        columns: per party, its feature columns (horizontal: ``d`` for every party).
        label_owner: vertical: the label owner's id.
        receivers: ids of the receivers of the weights.
        frac_bits: the engine's ``f``.
        prep: the provider that will serve the job, or its class (what it offers, e.g.
            ``comparison_masks``, changes what is consumed).
    """
    n = len(rows)
    if len(columns) != n or n < 1:
        raise ConfigError("rows and columns need one entry per party")
    f = frac_bits
    need = Requirements()
    if partition == "horizontal":
        d = columns[0]
        n_rows = sum(rows)
        masks = {j: rows[j] * (d + 1) for j in range(n)}
        if params.standardize:  # two passes of pooled sums, revealed to all
            need += Requirements(input_masks={j: 4 * d + 1 for j in range(n)}, random_values=4 * d + 1)
        revealed = d + 1
    else:
        if label_owner is None:
            raise ConfigError("the vertical partition needs a label_owner")
        d = sum(columns)
        n_rows = rows[0]
        masks = {j: n_rows * (columns[j] + (1 if j == label_owner else 0)) for j in range(n)}
        if params.standardize:
            need += Requirements(input_masks={j: 2 * columns[j] for j in range(n) if columns[j]})
        revealed = d + 1 + (2 * d if params.standardize else 0)
    need += Requirements(input_masks={j: m for j, m in masks.items() if m})
    d1 = d + 1
    scales = Scales.choose(f, params.learning_rate, params.batch_size)
    need += Requirements(truncation_pairs={scales.w_bits - f: d1})  # the final weights to f bits
    for epoch_order in batch_order(n_rows, params.epochs, params.seed):
        for idx in batches(epoch_order, params.batch_size):
            b = idx.size
            need += Requirements(matrix_triples={(b, d1, 1): 1, (d1, b, 1): 1})
            if params.sigmoid == "clip":
                need += sigmoid_clip_cost(b, Z_SCALE, f, prep=prep)
            else:  # the engine's piecewise sigmoid: 4 comparisons, 22 products, 24 truncations
                need += cmp.cost(cmp.Want(lt=True), 4 * b, prep=prep)
                need += Requirements(
                    triples=PIECEWISE_PRODUCTS * b, truncation_pairs={Z_SCALE - f: b, f: PIECEWISE_TRUNCATIONS * b}
                )
    return need + reveal_cost(revealed, receivers, n)
