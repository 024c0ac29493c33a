"""The node's audit log: an append-only table in the node's SQLite database.

Every step of every job is recorded: who proposed what (with the manifest hash), accept or
refuse and why, start and end, bytes exchanged, outputs released to whom, epsilon charged.
The table is append-only from the node's point of view: triggers make SQLite refuse any
``UPDATE`` or ``DELETE`` on it. (An operator with write access to the file can of course still
replace it; ship the log elsewhere for tamper evidence.) The privacy-budget ledger lives in the
same database file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AuditLog", "AuditEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    job_id TEXT,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    manifest_hash TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_job ON audit(job_id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True)
class AuditEntry:
    """One audit record."""

    id: int
    ts: float
    job_id: str | None
    event: str
    actor: str
    manifest_hash: str | None
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return {
            "id": self.id,
            "ts": self.ts,
            "job_id": self.job_id,
            "event": self.event,
            "actor": self.actor,
            "manifest_hash": self.manifest_hash,
            "detail": self.detail,
        }


class AuditLog:
    """Append-only audit records in SQLite (durable: each record is committed at once).

    Args:
        path: the database file (created if missing).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def record(
        self,
        event: str,
        *,
        actor: str,
        job_id: str | None = None,
        manifest_hash: str | None = None,
        **detail: Any,
    ) -> None:
        """Append one record (committed before this returns)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO audit (ts, job_id, event, actor, manifest_hash, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), job_id, event, actor, manifest_hash, json.dumps(detail, sort_keys=True, default=str)),
            )

    def entries(self, job_id: str | None = None, limit: int = 10_000) -> list[AuditEntry]:
        """Records in order, all or of one job."""
        query = "SELECT id, ts, job_id, event, actor, manifest_hash, detail FROM audit"
        args: tuple[Any, ...] = ()
        if job_id is not None:
            query += " WHERE job_id = ?"
            args = (job_id,)
        query += " ORDER BY id LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
