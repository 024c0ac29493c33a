"""A node's privacy-budget ledger in SQLite: per dataset, the (epsilon, delta) each job spent.

Rules:

- a dataset's budget ``(epsilon, delta)`` is set by the node's operator (passed in; a dataset
  without one has none to spend);
- :meth:`PrivacyLedger.charge` is called *before* a job sends anything that depends on the
  dataset. It refuses with :class:`~mpc.errors.BudgetExceeded` if the charge would take the
  dataset's total over its budget, and otherwise commits the charge durably (an SQLite
  transaction with ``synchronous=FULL``) before returning, so no noised output can leave the
  node uncharged: a crash or ``kill -9`` after ``charge`` returns leaves the charge in place,
  and a crash before it returns leaves nothing (the job never started);
- totals compose by basic composition (epsilons add, deltas add), the conservative rule that
  holds for any mix of mechanisms;
- a job id charges a dataset at most once: a second charge of the same ``(dataset, job_id)`` is
  refused (a rerun draws fresh noise, so it is a new job with a new id);
- concurrency: every charge runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's
  write lock before reading the totals, so concurrent charges from threads or processes are
  serialized and can never overspend together;
- the table is append-only for charges; :meth:`PrivacyLedger.record_release` and
  :meth:`PrivacyLedger.record_failure` only annotate a charge (a failed job's budget stays
  spent: its noised messages may have left the node).

The audit API (:meth:`PrivacyLedger.charges`, :meth:`PrivacyLedger.spent`,
:meth:`PrivacyLedger.remaining`) reads the same file, from any process.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from mpc.errors import BudgetExceeded, ConfigError, PolicyRefused

__all__ = ["Budget", "Charge", "PrivacyLedger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    job_id TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    charged_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'charged',
    updated_at REAL,
    receivers TEXT,
    note TEXT,
    UNIQUE (dataset, job_id)
);
CREATE INDEX IF NOT EXISTS charges_by_dataset ON charges (dataset);
"""

_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Budget:
    """A dataset's total privacy budget (or what is left of it).

    Attributes:
        epsilon: total epsilon.
        delta: total delta.
    """

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise ConfigError("a budget's epsilon must be finite and non-negative")
        if not 0 <= self.delta < 1:
            raise ConfigError("a budget's delta must be in [0, 1)")


@dataclass(frozen=True)
class Charge:
    """One row of the audit log.

    Attributes:
        dataset: the dataset charged.
        job_id: the job.
        epsilon: epsilon charged.
        delta: delta charged.
        charged_at: Unix time of the charge.
        status: ``"charged"``, ``"released"`` or ``"failed"``.
        updated_at: Unix time of the last status change, if any.
        receivers: parties the output was released to (after :meth:`record_release`).
        note: free text (e.g. a failure's error code).
    """

    dataset: str
    job_id: str
    epsilon: float
    delta: float
    charged_at: float
    status: str
    updated_at: float | None
    receivers: tuple[str, ...]
    note: str | None


class PrivacyLedger:
    """The ledger of one node.

    Args:
        path: the SQLite file (created if missing).
        budgets: dataset -> its total budget, from the node's configuration.
        timeout: seconds to wait for another writer's lock before failing.

    Raises:
        ConfigError: a budget is invalid or the file cannot be opened as a ledger.
    """

    def __init__(self, path: str | Path, budgets: Mapping[str, Budget], *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._budgets = {str(k): v for k, v in budgets.items()}
        for name, b in self._budgets.items():
            if not isinstance(b, Budget):
                raise ConfigError(f"budget of {name!r} must be a Budget")
        if not timeout > 0:
            raise ConfigError("timeout must be positive")
        self._timeout = timeout
        try:
            with self._connection() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open the ledger {self.path}: {exc}") from None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    def budget(self, dataset: str) -> Budget:
        """The configured budget of ``dataset``.

        Raises:
            BudgetExceeded: the dataset has no budget configured.
        """
        try:
            return self._budgets[dataset]
        except KeyError:
            raise BudgetExceeded(f"dataset {dataset!r} has no privacy budget", rule="no-budget") from None

    def charge(self, dataset: str, job_id: str, epsilon: float, delta: float) -> Charge:
        """Spend ``(epsilon, delta)`` of ``dataset`` for ``job_id``, durably, or refuse.

        Returns once the charge is committed to disk.

        Raises:
            ConfigError: invalid arguments (negative or NaN epsilon, delta outside [0, 1)).
            BudgetExceeded: no budget, an infinite epsilon, or the total would exceed the budget
                (nothing is written).
            PolicyRefused: this job already charged this dataset (rule ``"duplicate-charge"``).
        """
        if not isinstance(dataset, str) or not dataset or not isinstance(job_id, str) or not job_id:
            raise ConfigError("dataset and job_id must be non-empty strings")
        if math.isnan(epsilon) or epsilon < 0 or not 0 <= delta < 1:
            raise ConfigError("epsilon must be non-negative and delta in [0, 1)")
        budget = self.budget(dataset)
        if math.isinf(epsilon):
            raise BudgetExceeded(f"job {job_id!r} has no finite epsilon (no noise)", rule="budget")
        now = time.time()
        try:
            self._insert(dataset, job_id, float(epsilon), float(delta), budget, now)
        except sqlite3.Error as exc:  # fail closed: no durable charge, no job
            raise PolicyRefused(f"the ledger cannot be written: {exc}", rule="ledger-unavailable") from None
        return Charge(dataset, job_id, float(epsilon), float(delta), now, "charged", None, (), None)

    def _insert(self, dataset: str, job_id: str, epsilon: float, delta: float, budget: Budget, now: float) -> None:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")  # the write lock, before reading the totals
            try:
                dup = conn.execute(
                    "SELECT 1 FROM charges WHERE dataset = ? AND job_id = ?", (dataset, job_id)
                ).fetchone()
                if dup is not None:
                    raise PolicyRefused(
                        f"job {job_id!r} already charged dataset {dataset!r}", rule="duplicate-charge"
                    )
                spent_eps, spent_delta = conn.execute(
                    "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM charges WHERE dataset = ?",
                    (dataset,),
                ).fetchone()
                if spent_eps + epsilon > budget.epsilon + _TOLERANCE or spent_delta + delta > budget.delta + _TOLERANCE:
                    raise BudgetExceeded(
                        f"job {job_id!r} needs ({epsilon:g}, {delta:g}) of dataset {dataset!r}; "
                        f"spent ({spent_eps:g}, {spent_delta:g}) of ({budget.epsilon:g}, {budget.delta:g})",
                        rule="budget",
                    )
                conn.execute(
                    "INSERT INTO charges (dataset, job_id, epsilon, delta, charged_at) VALUES (?, ?, ?, ?, ?)",
                    (dataset, job_id, epsilon, delta, now),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _set_status(self, dataset: str, job_id: str, status: str, receivers: Sequence[str] | None, note: str | None) -> None:
        with self._connection() as conn:
            cur = conn.execute(
                "UPDATE charges SET status = ?, updated_at = ?, receivers = COALESCE(?, receivers), "
                "note = COALESCE(?, note) WHERE dataset = ? AND job_id = ?",
                (status, time.time(), None if receivers is None else json.dumps(list(receivers)), note, dataset, job_id),
            )
            if cur.rowcount != 1:
                raise ConfigError(f"no charge of dataset {dataset!r} by job {job_id!r}")

    def record_release(self, dataset: str, job_id: str, receivers: Sequence[str]) -> None:
        """Note in the audit log that the job's output was released to ``receivers``.

        Raises:
            ConfigError: no such charge.
        """
        self._set_status(dataset, job_id, "released", receivers, None)

    def record_failure(self, dataset: str, job_id: str, code: str) -> None:
        """Note that the job failed (its budget stays spent).

        Raises:
            ConfigError: no such charge.
        """
        self._set_status(dataset, job_id, "failed", None, code)

    def spent(self, dataset: str) -> Budget:
        """Total (epsilon, delta) charged to ``dataset`` so far."""
        with self._connection() as conn:
            eps, delta = conn.execute(
                "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM charges WHERE dataset = ?",
                (dataset,),
            ).fetchone()
        return Budget(float(eps), float(delta))

    def remaining(self, dataset: str) -> Budget:
        """What ``dataset`` may still spend.

        Raises:
            BudgetExceeded: the dataset has no budget configured.
        """
        budget, spent = self.budget(dataset), self.spent(dataset)
        return Budget(max(0.0, budget.epsilon - spent.epsilon), max(0.0, budget.delta - spent.delta))

    def charges(self, dataset: str | None = None) -> list[Charge]:
        """The audit log, oldest first (of one dataset, or all)."""
        query = "SELECT dataset, job_id, epsilon, delta, charged_at, status, updated_at, receivers, note FROM charges"
        args: tuple[str, ...] = ()
        if dataset is not None:
            query += " WHERE dataset = ?"
            args = (dataset,)
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY id", args).fetchall()
        return [
            Charge(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])) if r[7] else (), r[8])
            for r in rows
        ]
