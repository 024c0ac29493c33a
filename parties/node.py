"""A party's long-running node: the authenticated mesh, the control socket, jobs and audit.

Job agreement (two-phase, over the mesh's control plane; every message comes from an
authenticated federation member)::

    proposer                                   every other party
    parse manifest, check own policy
    open session   --propose(job_id, manifest, hash)-->  recompute hash, check policy,
                                                         open session, audit
                   <--reply(accept | refuse: rule)--
    all accepted?  --start(job_id, hash)-->              run the job
    otherwise      --abort(job_id)-->                    close the session
                   <--finished(state)--                  after running

Every party opens the job's session before it answers, so no protocol message arrives for a
session its receiver does not know. A party whose job fails (a peer vanished, a timeout, a
cancellation, a protocol error) sends ``abort`` to the others, which stop theirs: the job ends
in the same state everywhere. Outputs are written atomically, only at their named receivers,
only after the job succeeded. Every step is appended to the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from mpc.contracts import Channel
from mpc.errors import BudgetExceeded, ConfigError, MPCError, PolicyRefused, ProtocolViolation
from mpc.session import Session
from parties.alignment import ALIGN_PARAM, aligned_rows, select_rows
from parties.audit import AuditLog
from parties.config import NodeConfig, load_federation
from parties.control import ControlServer
from parties.datasets import read_columns
from parties.jobs import JobContext, get_kind
from parties.ledger import Budget, PrivacyLedger
from parties.manifest import Manifest, parse_manifest
from parties.policy import check_manifest
from transport.identity import Identity
from transport.websocket import WebsocketMesh

__all__ = ["Node", "JobRecord", "ACTIVE_STATES"]

log = logging.getLogger("parties.node")

ACTIVE_STATES = ("proposed", "accepted", "running")
_JOB_ID_CHARS = set("0123456789abcdef")


@dataclass
class JobRecord:
    """What this node knows of one job."""

    job_id: str
    manifest: Manifest
    digest: str
    proposer: str
    state: str = "proposed"
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    progress: tuple[float, str] = (0.0, "")
    task: asyncio.Task[Any] | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary for ``jobs`` and ``status``."""
        return {
            "job_id": self.job_id,
            "kind": self.manifest.kind,
            "name": self.manifest.name,
            "proposer": self.proposer,
            "parties": list(self.manifest.parties),
            "outputs": {k: list(v) for k, v in self.manifest.outputs.items()},
            "hash": self.digest,
            "state": self.state,
            "error": self.error,
            "progress": {"fraction": self.progress[0], "label": self.progress[1]},
            "started": self.started,
            "ended": self.ended,
            "stats": self.stats,
        }


class Node:
    """One party's node.

    Args:
        config: the validated node configuration.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.name = config.name
        self.federation = load_federation(config.federation_path)
        identity = Identity(config.name, config.key_path, config.cert_path).load()
        if identity.fingerprint != self.federation.by_name(config.name).fingerprint:
            raise ConfigError("this node's certificate does not match its pinned fingerprint in the federation")
        self.mesh = WebsocketMesh(
            identity,
            self.federation,
            recv_timeout=config.recv_timeout,
            connect_timeout=config.connect_timeout,
        )
        self.audit = AuditLog(config.database)
        self.ledger = PrivacyLedger(
            config.database, {ds: Budget(b.epsilon, b.delta) for ds, b in config.budgets.items()}
        )
        self._control = ControlServer(config.control_socket, self._on_request)
        self.jobs: dict[str, JobRecord] = {}
        self._channels: dict[str, Channel] = {}
        self._replies: dict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._job_locks: dict[str, asyncio.Lock] = {}
        self._storage_key: bytes | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start serving peers and the local control socket."""
        self.config.results_dir.mkdir(parents=True, exist_ok=True)
        self._storage_key = load_or_create_key(self.config.storage_key_path)
        self.mesh.router.set_control_handler(self._on_control)
        await self.mesh.start()
        await self._control.start()
        self.audit.record("node-started", actor=self.name, address=f"{self.config.host}:{self.config.port}")
        log.info("node %s serving peers on %s:%d", self.name, self.config.host, self.config.port)

    async def stop(self) -> None:
        """Stop cleanly: cancel running jobs (telling their peers), close the socket and the mesh."""
        for rec in self.jobs.values():
            if rec.state in ACTIVE_STATES:
                await self._abort_job(rec, "cancelled", "the node is stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._control.stop()
        await self.mesh.stop()
        self.audit.record("node-stopped", actor=self.name)
        self.audit.close()
        log.info("node %s stopped", self.name)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ control socket

    async def _on_request(self, req: dict[str, Any]) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        op = req.get("op")
        if op == "status":
            return {
                "ok": True,
                "name": self.name,
                "mesh": self.mesh.stats(),
                "jobs": self._job_list(),
                "budgets": self._budgets(),
            }
        if op == "jobs":
            return {"ok": True, "jobs": self._job_list()}
        if op == "submit":
            if req.get("stream"):
                return self._submit_stream(req.get("manifest"))
            return await self.submit(req.get("manifest"))
        if op == "cancel":
            rec = self._lookup(req.get("job_id"))
            if rec.state not in ACTIVE_STATES:
                return {"ok": False, "error": "config", "message": f"job is {rec.state}, not running"}
            await self._abort_job(rec, "cancelled", f"cancelled by the operator of {self.name}")
            return {"ok": True, "job": rec.summary()}
        if op == "result":
            rec = self._lookup(req.get("job_id"))
            path = self.config.results_dir / f"{rec.job_id}.json"
            if not path.exists():
                return {"ok": False, "error": "config", "message": f"no output of job {rec.job_id} was released to {self.name}"}
            return {"ok": True, "result": json.loads(path.read_text())}
        if op == "audit":
            job_id = req.get("job_id")
            return {"ok": True, "entries": [e.as_dict() for e in self.audit.entries(job_id if isinstance(job_id, str) else None)]}
        raise ConfigError(f"unknown control operation {op!r}")

    def _budgets(self) -> dict[str, dict[str, float]]:
        out = {}
        for ds, b in self.config.budgets.items():
            left = self.ledger.remaining(ds)
            out[ds] = {"epsilon": b.epsilon, "delta": b.delta, "remaining_epsilon": left.epsilon, "remaining_delta": left.delta}
        return out

    def _lookup(self, job_id: Any) -> JobRecord:
        if isinstance(job_id, str):
            matches = [r for jid, r in self.jobs.items() if jid.startswith(job_id)] if len(job_id) >= 6 else []
            if len(matches) == 1:
                return matches[0]
        raise ConfigError(f"no such job {job_id!r} (give at least 6 characters of its id)")

    def _job_list(self) -> list[dict[str, Any]]:
        return [rec.summary() for rec in self.jobs.values()]

    # ------------------------------------------------------------------ proposer side

    async def _prepare(self, raw: Any) -> tuple[JobRecord | None, dict[str, Any] | None]:
        """Validate a local submission; returns the new job or a refusal response."""
        try:
            manifest = parse_manifest(raw)
        except ConfigError as exc:
            return None, {"ok": False, "error": exc.code, "rule": "manifest", "message": str(exc)}
        digest = manifest.digest()
        try:
            await self._check(manifest, digest, proposer=self.name, sender=None)
        except PolicyRefused as exc:
            self.audit.record("refused", actor=self.name, manifest_hash=digest, rule=exc.rule, reason=str(exc), proposer=self.name)
            log.warning("refused own submission (rule %s): %s", exc.rule, exc)
            return None, {"ok": False, "error": exc.code, "rule": exc.rule, "message": str(exc)}
        try:
            self._check_not_running(digest)  # again: another submission may have run meanwhile
        except PolicyRefused as exc:
            return None, {"ok": False, "error": exc.code, "rule": exc.rule, "message": str(exc)}
        job_id = os.urandom(16).hex()
        rec = self.jobs[job_id] = JobRecord(job_id, manifest, digest, self.name)
        self.audit.record(
            "proposed", actor=self.name, job_id=job_id, manifest_hash=digest, kind=manifest.kind, manifest=manifest.to_dict()
        )
        return rec, None

    async def submit(self, raw_manifest: Any) -> dict[str, Any]:
        """Propose a job, run it once every party accepted, and return the outcome here.

        Returns:
            ``{"ok": True, "job": summary, "outputs": ..., "parties": per-party states}``
            or ``{"ok": False, "error": code, "rule": ..., "message": ...}``.
        """
        rec, refusal = await self._prepare(raw_manifest)
        if rec is None:
            assert refusal is not None
            return refusal
        return await self._propose_and_run(rec)

    async def _submit_stream(self, raw_manifest: Any) -> AsyncIterator[dict[str, Any]]:
        rec, refusal = await self._prepare(raw_manifest)
        if rec is None:
            assert refusal is not None
            yield refusal
            return
        yield {"event": "proposed", "job": rec.summary()}
        task = asyncio.ensure_future(self._propose_and_run(rec))
        last: tuple[float, str] | None = None
        while not task.done():
            if rec.progress != last:
                last = rec.progress
                yield {"event": "progress", "job_id": rec.job_id, "state": rec.state, "fraction": last[0], "label": last[1]}
            await asyncio.wait([task], timeout=0.1)
        yield {"event": "result", **task.result()}

    async def _propose_and_run(self, rec: JobRecord) -> dict[str, Any]:
        manifest = rec.manifest
        self._open_session(rec)
        peers = [p for p in manifest.parties if p != self.name]
        proposal = {"job_id": rec.job_id, "proposer": self.name, "manifest": manifest.to_dict(), "hash": rec.digest}
        replies = await asyncio.gather(*(self._ask(peer, proposal) for peer in peers))
        refusals = [r for r in replies if not r.get("accept")]
        if refusals:
            for peer in peers:
                await self._send_quietly(peer, "abort", {"job_id": rec.job_id, "code": "policy-refused"})
            self._close_session(rec.job_id)
            first = refusals[0]
            rec.state, rec.ended = "refused", time.time()
            rec.error = f"{first['party']} refused (rule {first.get('rule')}): {first.get('message')}"
            self.audit.record("refused", actor=self.name, job_id=rec.job_id, manifest_hash=rec.digest, refusals=refusals)
            log.warning("job %s refused: %s", rec.job_id, rec.error)
            unreachable = any(r.get("rule") == "unreachable" for r in refusals)
            return {
                "ok": False,
                "error": "peer-unavailable" if unreachable else "policy-refused",
                "rule": first.get("rule"),
                "message": rec.error,
                "job": rec.summary(),
                "refusals": refusals,
            }
        finished = {peer: self._expect(rec.job_id, peer, "finished") for peer in peers}
        for peer in peers:
            await self._send_quietly(peer, "start", {"job_id": rec.job_id, "hash": rec.digest})
        rec.task = self._spawn(self._run(rec))
        await asyncio.gather(rec.task, return_exceptions=True)
        states = {self.name: {"state": rec.state, "error": rec.error}}
        for peer, fut in finished.items():
            states[peer] = await self._wait_reply(rec.job_id, peer, "finished", fut, self.config.recv_timeout)
        ok = all(st.get("state") == "done" for st in states.values())
        return {"ok": ok, "job": rec.summary(), "outputs": rec.outputs, "error": rec.error, "parties": states}

    def _expect(self, job_id: str, peer: str, kind: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[(job_id, peer, kind)] = fut
        return fut

    async def _wait_reply(
        self, job_id: str, peer: str, kind: str, fut: asyncio.Future[dict[str, Any]], timeout: float
    ) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return {"state": "unknown", "error": f"{peer} sent no '{kind}' report in time"}
        finally:
            self._replies.pop((job_id, peer, kind), None)

    async def _ask(self, peer: str, proposal: dict[str, Any]) -> dict[str, Any]:
        job_id = proposal["job_id"]
        fut = self._expect(job_id, peer, "reply")
        try:
            await self.mesh.router.send_control(peer, "propose", proposal)
        except MPCError as exc:
            self._replies.pop((job_id, peer, "reply"), None)
            return {"accept": False, "party": peer, "rule": "unreachable", "message": str(exc)}
        reply = await self._wait_reply(job_id, peer, "reply", fut, self.config.recv_timeout)
        if "accept" not in reply:
            return {"accept": False, "party": peer, "rule": "unreachable", "message": reply["error"]}
        return reply

    async def _send_quietly(self, peer: str, tag: str, payload: dict[str, Any]) -> None:
        try:
            await self.mesh.router.send_control(peer, tag, payload)
        except MPCError as exc:
            log.warning("could not send %s to %s: %s", tag, peer, exc)

    # ------------------------------------------------------------------ participant side

    async def _on_control(self, peer: str, tag: str, payload: Any) -> None:
        if not isinstance(payload, dict) or not _valid_job_id(payload.get("job_id")):
            log.warning("refused control message %r from %s: malformed", tag, peer)
            return
        job_id = payload["job_id"]
        # Control messages of one job are handled one at a time, in arrival order (the router
        # runs handlers as concurrent tasks; asyncio.Lock is FIFO): an abort that follows a
        # proposal is never handled before it.
        lock = self._job_locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            await self._handle_control(peer, tag, job_id, payload)

    async def _handle_control(self, peer: str, tag: str, job_id: str, payload: dict[str, Any]) -> None:
        if tag == "propose":
            await self._on_propose(peer, payload)
        elif tag in ("reply", "finished"):
            fut = self._replies.get((job_id, peer, tag))
            if fut is None or fut.done():
                log.warning("refused %s from %s: nothing pending for job %s", tag, peer, job_id)
                return
            fut.set_result({**payload, "party": peer})
        elif tag == "start":
            self._on_start(peer, payload)
        elif tag == "abort":
            rec = self.jobs.get(job_id)
            if rec is None or peer not in rec.manifest.parties:
                log.warning("refused abort from %s for job %s: not a party of it", peer, job_id)
                return
            code = payload.get("code") if isinstance(payload.get("code"), str) else "abort"
            if rec.state in ACTIVE_STATES:
                await self._abort_job(rec, "failed" if code != "cancelled" else "cancelled", f"aborted by {peer} ({code})", notify=False)
        else:
            log.warning("refused control message %r from %s: unknown kind", tag, peer)

    async def _check(self, manifest: Manifest, digest: str, *, proposer: str, sender: str | None) -> None:
        """The node's policy check of a job (in a thread: counting rows reads a dataset)."""
        self._check_not_running(digest)
        await asyncio.to_thread(
            check_manifest,
            manifest,
            self.config,
            self.federation,
            proposer=proposer,
            sender=sender,
            count_rows=self._count_rows,
            check_budget=self._check_budget,
        )

    def _check_not_running(self, digest: str) -> None:
        if any(r.digest == digest and r.state in ACTIVE_STATES for r in self.jobs.values()):
            raise PolicyRefused("this manifest is already being run", rule="duplicate-job")
        active = sum(1 for r in self.jobs.values() if r.state in ("accepted", "running"))
        if active >= self.config.policy.max_concurrent_jobs:
            raise PolicyRefused("too many jobs running on this node", rule="max_concurrent_jobs")

    async def _on_propose(self, peer: str, payload: dict[str, Any]) -> None:
        job_id = payload["job_id"]
        digest = None
        try:
            if job_id in self.jobs:
                raise PolicyRefused("a job with this id already exists", rule="duplicate-job")
            if payload.get("proposer") != peer:
                raise PolicyRefused(f"proposal from {peer} names {payload.get('proposer')!r} as proposer", rule="proposer-mismatch")
            try:
                manifest = parse_manifest(payload.get("manifest"))
            except ConfigError as exc:
                raise PolicyRefused(str(exc), rule="manifest") from None
            digest = manifest.digest()
            if payload.get("hash") != digest:
                raise PolicyRefused("the manifest does not match its hash (changed in flight)", rule="hash-mismatch")
            await self._check(manifest, digest, proposer=peer, sender=peer)
            if job_id in self.jobs:  # again, after the await
                raise PolicyRefused("a job with this id already exists", rule="duplicate-job")
            self._check_not_running(digest)
        except PolicyRefused as exc:
            log.warning("refused job %s from %s (rule %s): %s", job_id, peer, exc.rule, exc)
            self.audit.record("refused", actor=self.name, job_id=job_id, manifest_hash=digest, proposer=peer, rule=exc.rule, reason=str(exc))
            reply = {"job_id": job_id, "accept": False, "code": exc.code, "rule": exc.rule, "message": str(exc)}
            await self._send_quietly(peer, "reply", reply)
            return
        rec = self.jobs[job_id] = JobRecord(job_id, manifest, digest, peer, state="accepted")
        self._open_session(rec)
        self.audit.record("accepted", actor=self.name, job_id=job_id, manifest_hash=digest, proposer=peer, kind=manifest.kind, manifest=manifest.to_dict())
        log.info("accepted job %s (%s) from %s, manifest %s", job_id, manifest.kind, peer, digest[:16])
        self._spawn(self._expire(rec))
        await self._send_quietly(peer, "reply", {"job_id": job_id, "accept": True, "hash": digest})

    def _on_start(self, peer: str, payload: dict[str, Any]) -> None:
        rec = self.jobs.get(payload["job_id"])
        if rec is None or rec.proposer != peer or rec.state != "accepted" or payload.get("hash") != rec.digest:
            log.warning("refused start from %s for job %s: not an accepted job of that proposer", peer, payload["job_id"])
            return
        rec.task = self._spawn(self._run(rec))

    async def _expire(self, rec: JobRecord) -> None:
        await asyncio.sleep(2 * self.config.recv_timeout)
        if rec.state == "accepted":
            rec.state, rec.ended, rec.error = "expired", time.time(), "the proposer never started the job"
            self._close_session(rec.job_id)
            self.audit.record("expired", actor=self.name, job_id=rec.job_id, manifest_hash=rec.digest)
            log.warning("job %s expired: the proposer never started it", rec.job_id)

    # ------------------------------------------------------------------ running

    def _check_budget(self, dataset: str, epsilon: float, delta: float) -> None:
        """Refuse (before anything runs) a DP job the dataset's remaining budget cannot pay."""
        left = self.ledger.remaining(dataset)
        if epsilon > left.epsilon + 1e-12 or delta > left.delta + 1e-12:
            raise BudgetExceeded(
                f"dataset {dataset!r} has ({left.epsilon:g}, {left.delta:g}) left; the job needs ({epsilon:g}, {delta:g})",
                rule="budget-exceeded",
            )

    def _charge(self, rec: JobRecord) -> str | None:
        """Commit a DP job's charge durably before any of its messages leave the node."""
        kind = get_kind(rec.manifest.kind)
        spec = rec.manifest.inputs.get(self.name)
        if kind is None or not kind.dp or spec is None or rec.manifest.dp is None:
            return None
        dp = rec.manifest.dp
        self.ledger.charge(spec.dataset, rec.job_id, dp.epsilon, dp.delta)
        left = self.ledger.remaining(spec.dataset)
        self.audit.record(
            "charged", actor=self.name, job_id=rec.job_id, manifest_hash=rec.digest,
            dataset=spec.dataset, epsilon=dp.epsilon, delta=dp.delta,
            remaining_epsilon=left.epsilon, remaining_delta=left.delta,
        )
        return spec.dataset

    def _count_rows(self, dataset: str) -> int:
        ds = self.config.datasets[dataset]
        first = next(iter(ds.allowed_columns or tuple(ds.columns)))
        return len(read_columns(ds, [first])[first])

    def _open_session(self, rec: JobRecord) -> None:
        channel = self.mesh.channel(rec.job_id, list(rec.manifest.parties), timeout=self.config.recv_timeout)
        self._channels[rec.job_id] = channel

    def _close_session(self, job_id: str) -> None:
        channel = self._channels.pop(job_id, None)
        if channel is not None:
            self._spawn(channel.close())

    async def _abort_job(self, rec: JobRecord, state: str, reason: str, *, notify: bool = True) -> None:
        """End an active job here (and, with ``notify``, at every other party)."""
        if rec.state not in ACTIVE_STATES:
            return
        rec.state, rec.error, rec.ended = state, reason, time.time()
        if rec.task is not None and not rec.task.done() and rec.task is not asyncio.current_task():
            rec.task.cancel()
        self._close_session(rec.job_id)
        self.audit.record(state, actor=self.name, job_id=rec.job_id, manifest_hash=rec.digest, reason=reason)
        log.warning("job %s %s: %s", rec.job_id, state, reason)
        if notify:
            code = "cancelled" if state == "cancelled" else "abort"
            for peer in rec.manifest.parties:
                if peer != self.name:
                    await self._send_quietly(peer, "abort", {"job_id": rec.job_id, "code": code})

    async def _run(self, rec: JobRecord) -> None:
        if rec.state not in ("proposed", "accepted"):
            return
        manifest = rec.manifest
        kind = get_kind(manifest.kind)
        assert kind is not None  # checked by check_manifest before the job was recorded
        channel = self._channels[rec.job_id]
        rec.state, rec.started = "running", time.time()
        self.audit.record("started", actor=self.name, job_id=rec.job_id, manifest_hash=rec.digest)
        log.info("job %s (%s) running among %s", rec.job_id, manifest.kind, ", ".join(manifest.parties))

        def progress(fraction: float, label: str) -> None:
            rec.progress = (min(max(float(fraction), 0.0), 1.0), label)

        charged: str | None = None
        try:
            charged = await asyncio.to_thread(self._charge, rec)
            data: dict[str, Any] = {}
            spec = manifest.inputs.get(self.name)
            if spec is not None:
                data = await asyncio.to_thread(self._read_input, manifest, spec.dataset, list(spec.columns))
            ctx = JobContext(
                Session(channel, offload=self.config.offload_compute),
                manifest,
                self.name,
                data,
                progress,
                preprocessing_dir=self.config.state_dir / "preprocessing",
                storage_key=self._storage_key,
                results_dir=self.config.results_dir,
            )
            outputs = await asyncio.wait_for(kind.run(ctx), manifest.timeout)
            mine = set(manifest.outputs_for(self.name))
            if not set(outputs) <= mine:
                raise ProtocolViolation("the job produced an output this party is not named to receive")
        except asyncio.CancelledError:
            if rec.state == "running":  # cancelled by stop() without an abort: record it
                rec.state, rec.error = "cancelled", "the node stopped"
            raise
        except (MPCError, asyncio.TimeoutError) as exc:
            code = exc.code if isinstance(exc, MPCError) else "timeout"
            await self._abort_job(rec, "failed", f"{code}: {exc}" if str(exc) else code)
        else:
            if rec.state == "running":
                rec.outputs = outputs
                if outputs:
                    self._write_outputs(rec)
                rec.state = "done"
        finally:
            if charged is not None:
                if rec.state == "done":
                    self.ledger.record_release(charged, rec.job_id, list(rec.manifest.receivers))
                else:
                    self.ledger.record_failure(charged, rec.job_id, rec.error or rec.state)
            rec.ended = time.time()
            rec.stats = channel.stats.as_dict()
            self._close_session(rec.job_id)
            self._finish(rec)

    def _read_input(self, manifest: Manifest, dataset: str, columns: list[str]) -> dict[str, Any]:
        """This party's input columns, at the rows of a private join if the job aligns with one."""
        config = self.config.datasets[dataset]
        data = read_columns(config, columns)
        if ALIGN_PARAM in manifest.params:
            data = select_rows(data, aligned_rows(self.config.results_dir, manifest, self.name, config))
        return data

    def _finish(self, rec: JobRecord) -> None:
        self.audit.record(
            "finished",
            actor=self.name,
            job_id=rec.job_id,
            manifest_hash=rec.digest,
            state=rec.state,
            error=rec.error,
            bytes_sent=rec.stats.get("bytes_sent"),
            bytes_received=rec.stats.get("bytes_received"),
            rounds=rec.stats.get("rounds"),
        )
        if rec.state == "done":
            for out, receivers in rec.manifest.outputs.items():
                self.audit.record(
                    "released", actor=self.name, job_id=rec.job_id, manifest_hash=rec.digest,
                    output=out, receivers=list(receivers), received_here=out in rec.outputs,
                )
        log.info("job %s %s%s", rec.job_id, rec.state, f": {rec.error}" if rec.error else "")
        if rec.proposer != self.name:
            report = {"job_id": rec.job_id, "state": rec.state, "error": rec.error}
            self._spawn(self._send_quietly(rec.proposer, "finished", report))

    def _write_outputs(self, rec: JobRecord) -> None:
        out = self.config.results_dir / f"{rec.job_id}.json"
        tmp = out.with_suffix(".json.tmp")
        doc = {"job_id": rec.job_id, "manifest": rec.manifest.to_dict(), "manifest_hash": rec.digest, "outputs": rec.outputs}
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=2, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)


def load_or_create_key(path: Any) -> bytes:
    """A node's 32-byte secret key file: read it, or create it from the OS CSPRNG (mode 0600).

    Raises:
        ConfigError: the file exists but is not 32 bytes, or is readable by others.
    """
    import stat

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is accessible by group or others; run chmod 600")
    key = path.read_bytes()
    if len(key) != 32:
        raise ConfigError(f"{path} must hold exactly 32 bytes")
    return key


def _valid_job_id(job_id: Any) -> bool:
    return isinstance(job_id, str) and len(job_id) == 32 and set(job_id) <= _JOB_ID_CHARS


def _json_default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to a result file")

