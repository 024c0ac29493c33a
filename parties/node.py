"""A party's long-running node: the authenticated mesh, the control socket, and job agreement.

Job agreement (two-phase, over the mesh's control plane, every message from an authenticated
federation member)::

    proposer                          every other party
    check own policy
    open session        --propose(spec, hash)-->  recompute hash, check policy, open session
                        <--accept(hash) | refuse(rule)--
    all accepted?       --start(job_id, hash)-->  run the job's protocol
    otherwise           --abort(job_id)-->        close the session

Every party opens the job's session before it answers, so no protocol message can arrive for a
session its receiver does not know yet. A node that accepted but never hears ``start`` closes the
session after its timeout. Results are written only at the job's receivers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpc.contracts import Channel
from mpc.errors import ConfigError, MPCError, PolicyRefused, ProtocolViolation
from mpc.session import Session
from parties.config import NodeConfig, load_federation
from parties.control import ControlServer
from parties.jobs import JobSpec, check_policy, job_spec_from_dict, new_job_id, run_job
from transport.identity import Identity
from transport.websocket import WebsocketMesh

__all__ = ["Node", "JobRecord"]

log = logging.getLogger("parties.node")


@dataclass
class JobRecord:
    """What this node knows of one job."""

    spec: JobSpec
    digest: str
    state: str = "proposed"
    error: str | None = None
    result: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary for ``status`` and ``jobs``."""
        return {
            "job_id": self.spec.job_id,
            "kind": self.spec.kind,
            "proposer": self.spec.proposer,
            "parties": list(self.spec.parties),
            "receivers": list(self.spec.receivers),
            "hash": self.digest,
            "state": self.state,
            "error": self.error,
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
        self._control = ControlServer(config.control_socket, self._on_request)
        self.jobs: dict[str, JobRecord] = {}
        self._channels: dict[str, Channel] = {}
        self._replies: dict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start serving peers and the local control socket."""
        self.config.results_dir.mkdir(parents=True, exist_ok=True)
        self.mesh.router.set_control_handler(self._on_control)
        await self.mesh.start()
        await self._control.start()
        log.info("node %s serving peers on %s:%d", self.config.name, self.config.host, self.config.port)

    async def stop(self) -> None:
        """Stop cleanly: cancel running jobs, close the control socket and the mesh."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._control.stop()
        await self.mesh.stop()
        self._stopped.set()
        log.info("node %s stopped", self.config.name)

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

    async def _on_request(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "status":
            return {"ok": True, "name": self.config.name, "mesh": self.mesh.stats(), "jobs": self._job_list()}
        if op == "jobs":
            return {"ok": True, "jobs": self._job_list()}
        if op == "submit":
            return await self.submit(
                kind=str(req.get("kind", "")),
                params=req.get("params") or {},
                parties=req.get("parties"),
                receivers=req.get("receivers"),
            )
        raise ConfigError(f"unknown control operation {op!r}")

    def _job_list(self) -> list[dict[str, Any]]:
        return [rec.summary() for rec in self.jobs.values()]

    # ------------------------------------------------------------------ proposer side

    async def submit(
        self,
        *,
        kind: str,
        params: dict[str, Any],
        parties: list[str] | None = None,
        receivers: list[str] | None = None,
    ) -> dict[str, Any]:
        """Propose a job to its parties, run it once all accept, and return this node's outcome.

        Returns:
            ``{"ok": True, "job": summary, "result": ...}`` or ``{"ok": False, "error": code, ...}``.
        """
        names = list(parties) if parties else [p.name for p in self.federation.parties]
        spec = JobSpec(
            job_id=new_job_id(),
            kind=kind,
            proposer=self.config.name,
            parties=tuple(names),
            receivers=tuple(receivers) if receivers else tuple(names),
            params=params,
        )
        digest = spec.digest()
        try:
            check_policy(spec, self.config, self.federation, sender=None)
        except PolicyRefused as exc:
            log.warning("job %s refused locally (rule %s): %s", spec.job_id, exc.rule, exc)
            return {"ok": False, "error": exc.code, "rule": exc.rule, "message": str(exc)}
        rec = self.jobs[spec.job_id] = JobRecord(spec, digest)
        self._open_session(spec)
        peers = [p for p in spec.parties if p != self.config.name]
        replies = await asyncio.gather(*(self._ask(peer, spec, digest) for peer in peers))
        refusals = [r for r in replies if not r.get("accept")]
        if refusals:
            for peer in peers:
                await self._send_control_quietly(peer, "abort", {"job_id": spec.job_id})
            self._close_session(spec.job_id)
            rec.state, rec.ended = "refused", time.time()
            first = refusals[0]
            rec.error = f"{first.get('party')}: {first.get('rule')}: {first.get('message')}"
            log.warning("job %s refused: %s", spec.job_id, rec.error)
            unreachable = [r for r in refusals if r.get("rule") == "unreachable"]
            code = "peer-unavailable" if unreachable else "policy-refused"
            return {"ok": False, "error": code, "rule": first.get("rule"), "job": rec.summary(), "refusals": refusals}
        finished = {peer: self._expect(spec.job_id, peer, "finished") for peer in peers}
        for peer in peers:
            await self.mesh.router.send_control(peer, "start", {"job_id": spec.job_id, "hash": digest})
        await self._run(rec)
        states = {self.config.name: {"state": rec.state, "error": rec.error}}
        for peer, fut in finished.items():
            states[peer] = await self._wait_reply(spec.job_id, peer, "finished", fut)
        ok = all(st.get("state") == "done" for st in states.values())
        return {"ok": ok, "job": rec.summary(), "result": rec.result, "error": rec.error, "parties": states}

    def _expect(self, job_id: str, peer: str, kind: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[(job_id, peer, kind)] = fut
        return fut

    async def _wait_reply(self, job_id: str, peer: str, kind: str, fut: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(fut, self.config.recv_timeout)
        except asyncio.TimeoutError:
            return {"state": "unknown", "error": f"{peer} sent no '{kind}' report in time"}
        finally:
            self._replies.pop((job_id, peer, kind), None)

    async def _ask(self, peer: str, spec: JobSpec, digest: str) -> dict[str, Any]:
        fut = self._expect(spec.job_id, peer, "reply")
        try:
            await self.mesh.router.send_control(peer, "propose", {"spec": spec.to_dict(), "hash": digest})
        except MPCError as exc:
            self._replies.pop((spec.job_id, peer, "reply"), None)
            return {"accept": False, "party": peer, "rule": "unreachable", "message": str(exc)}
        reply = await self._wait_reply(spec.job_id, peer, "reply", fut)
        if "accept" not in reply:
            return {"accept": False, "party": peer, "rule": "unreachable", "message": reply["error"]}
        return reply

    async def _send_control_quietly(self, peer: str, tag: str, payload: dict[str, Any]) -> None:
        try:
            await self.mesh.router.send_control(peer, tag, payload)
        except MPCError as exc:
            log.warning("could not send %s to %s: %s", tag, peer, exc)

    # ------------------------------------------------------------------ participant side

    async def _on_control(self, peer: str, tag: str, payload: Any) -> None:
        if not isinstance(payload, dict):
            log.warning("refused control message %r from %s: not a map", tag, peer)
            return
        if tag == "propose":
            await self._on_propose(peer, payload)
        elif tag in ("reply", "finished"):
            fut = self._replies.get((str(payload.get("job_id")), peer, tag))
            if fut is None or fut.done():
                log.warning("refused %s from %s: nothing pending for job %s", tag, peer, payload.get("job_id"))
                return
            fut.set_result({**payload, "party": peer})
        elif tag == "start":
            self._on_start(peer, payload)
        elif tag == "abort":
            rec = self.jobs.get(str(payload.get("job_id")))
            if rec is not None and rec.spec.proposer == peer and rec.state == "accepted":
                rec.state, rec.ended = "aborted", time.time()
                self._close_session(rec.spec.job_id)
                log.info("job %s aborted by its proposer %s", rec.spec.job_id, peer)
        else:
            log.warning("refused control message %r from %s: unknown kind", tag, peer)

    async def _on_propose(self, peer: str, payload: dict[str, Any]) -> None:
        job_id = payload.get("spec", {}).get("job_id") if isinstance(payload.get("spec"), dict) else None
        try:
            spec = job_spec_from_dict(payload.get("spec"))
            digest = spec.digest()
            if payload.get("hash") != digest:
                raise PolicyRefused("job spec does not match its hash (changed in flight)", rule="hash-mismatch")
            if spec.job_id in self.jobs:
                raise PolicyRefused("a job with this id was already proposed", rule="duplicate-job")
            check_policy(spec, self.config, self.federation, sender=peer)
        except (PolicyRefused, ProtocolViolation, ConfigError) as exc:
            rule = getattr(exc, "rule", exc.code)
            log.warning("refused job %s from %s (rule %s): %s", job_id, peer, rule, exc)
            await self._send_control_quietly(
                peer, "reply", {"job_id": job_id, "accept": False, "rule": rule, "message": str(exc)}
            )
            return
        rec = self.jobs[spec.job_id] = JobRecord(spec, digest, state="accepted")
        self._open_session(spec)
        log.info("accepted job %s (%s) from %s, hash %s", spec.job_id, spec.kind, peer, digest[:16])
        self._spawn(self._expire(rec))
        await self._send_control_quietly(peer, "reply", {"job_id": spec.job_id, "accept": True, "hash": digest})

    def _on_start(self, peer: str, payload: dict[str, Any]) -> None:
        rec = self.jobs.get(str(payload.get("job_id")))
        if rec is None or rec.spec.proposer != peer or rec.state != "accepted" or payload.get("hash") != rec.digest:
            log.warning("refused start from %s for job %s: not an accepted job of that proposer", peer, payload.get("job_id"))
            return
        self._spawn(self._run(rec))

    async def _expire(self, rec: JobRecord) -> None:
        await asyncio.sleep(2 * self.config.recv_timeout)
        if rec.state == "accepted":
            rec.state, rec.ended, rec.error = "expired", time.time(), "no start from the proposer"
            self._close_session(rec.spec.job_id)
            log.warning("job %s expired: the proposer never started it", rec.spec.job_id)

    # ------------------------------------------------------------------ running

    def _open_session(self, spec: JobSpec) -> None:
        self._channels[spec.job_id] = self.mesh.channel(spec.job_id, list(spec.parties))

    def _close_session(self, job_id: str) -> None:
        channel = self._channels.pop(job_id, None)
        if channel is not None:
            self._spawn(channel.close())

    async def _run(self, rec: JobRecord) -> None:
        spec = rec.spec
        rec.state = "running"
        channel = self._channels[spec.job_id]
        log.info("job %s (%s) running among %s", spec.job_id, spec.kind, ", ".join(spec.parties))
        try:
            result = await run_job(Session(channel), spec, self.config)
        except (MPCError, asyncio.CancelledError) as exc:
            rec.state, rec.error = "failed", f"{getattr(exc, 'code', 'cancelled')}: {exc}"
            log.error("job %s failed: %s", spec.job_id, rec.error)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            rec.result = result
            if result is not None:
                self._write_result(rec)
            rec.state = "done"
            log.info(
                "job %s done; output %s",
                spec.job_id,
                "released to this node" if result is not None else "not released to this node",
            )
        finally:
            rec.ended = time.time()
            rec.stats = channel.stats.as_dict()
            self._close_session(spec.job_id)
            if spec.proposer != self.config.name:
                report = {"job_id": spec.job_id, "state": rec.state, "error": rec.error}
                self._spawn(self._send_control_quietly(spec.proposer, "finished", report))

    def _write_result(self, rec: JobRecord) -> None:
        out = self.config.results_dir / f"{rec.spec.job_id}.json"
        tmp = out.with_suffix(".json.tmp")
        doc = {"job": rec.spec.to_dict(), "hash": rec.digest, "result": rec.result}
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, out)

    @property
    def results_dir(self) -> Path:
        """Where this node writes results released to it."""
        return self.config.results_dir

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` has completed."""
        await self._stopped.wait()
