"""The async driver of SecAgg: one short function per stage, moving the pure stages' messages.

The aggregator collects each stage's messages from the clients still live with a deadline
(``stage_timeout``); a client whose message does not arrive in time, or whose peer link fails
(``PeerUnavailable``), is dropped for the rest of the run. Clients that drop are told so with a
stop notice (if they are still reachable), so a slow client ends with ``AbortError`` rather than
waiting out its receive timeout. If the aggregator aborts, it sends every live client a stop
notice carrying only the error's code, then raises.

A client advertises its keys to each graph neighbour directly before the aggregator, and after
the roster waits at most ``stage_timeout`` for the direct keys of the neighbours it lists; if
:func:`~protocols.secagg.client.check_direct_keys` finds them missing or different, the client
sends the aggregator a stop notice carrying only the error's code and raises; the aggregator
then aborts the run.

The consistency round runs between the clients alone: on the survivor list, each client sends
its digest of ``U3`` directly to its peers of :func:`~protocols.secagg.client.client_survivors`,
waits at most ``stage_timeout`` for theirs (missing ones are tolerated), and either unmasks or
sends the aggregator a stop notice in place of its shares and raises. The aggregator therefore
waits up to ``2 * stage_timeout`` for the unmask answers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Mapping, TypeVar

from mpc.errors import AbortError, ConfigError, MPCError, PeerUnavailable, ProtocolViolation
from mpc.prg import PRG
from mpc.session import Round, Session
from protocols.secagg import messages
from protocols.secagg.client import (
    ClientAgreed,
    ClientMasked,
    ClientSetup,
    ClientSharedKeys,
    check_input,
    client_check_digests,
    client_mask,
    client_result,
    client_setup,
    client_share_keys,
    client_survivors,
    client_unmask,
    roster_members,
)
from protocols.secagg.params import SecAggParams, SecAggPlan
from protocols.secagg.result import SecAggResult
from protocols.secagg.server import (
    server_collect_keys,
    server_collect_masked,
    server_relay_shares,
    server_unmask,
    result_message,
)

__all__ = [
    "secure_aggregate",
    "SecAggRun",
    "open_run",
    "collect",
    "send_each",
    "run_client_setup",
    "run_client_share_keys",
    "run_client_mask",
    "run_client_consistency",
    "run_client_unmask",
    "run_client_result",
    "run_server",
    "run_party",
]

T = TypeVar("T")

ROUNDS = (
    "advertise", "roster", "shares", "forward", "masked", "survivors", "consistency", "unmask",
    "result",
)


class SecAggRun:
    """The rounds and public data of one run, allocated identically at every party.

    Args:
        session: this party's session (the run uses a child session ``secagg``).
        params: the run's parameters.

    Attributes:
        plan: the validated plan.
        session: the child session.
        context: bytes naming the run (bound into every key, seed and ciphertext).
        graph: client -> neighbours.
        rounds: round name -> :class:`~mpc.session.Round`.
    """

    def __init__(self, session: Session, params: SecAggParams) -> None:
        self.plan: SecAggPlan = params.plan(session.n_parties)
        self.session = session.child("secagg")
        self.context = f"{self.session.session_id}\x00{self.session.path}".encode()
        self.graph = self.plan.graph(b"secagg-public-graph\x00" + self.context)
        self.rounds: dict[str, Round] = {name: self.session.round(name) for name in ROUNDS}

    @property
    def prg(self) -> PRG:
        """This party's private randomness."""
        return self.session.prg


def open_run(session: Session, params: SecAggParams) -> SecAggRun:
    """Validate ``params`` and allocate the run's rounds (every party calls this first)."""
    return SecAggRun(session, params)


async def collect(rnd: Round, peers: list[int], timeout: float) -> dict[int, Any]:
    """Receive ``rnd``'s message from each of ``peers`` until ``timeout`` seconds pass.

    Returns:
        Peer id -> payload for the peers whose message arrived in time; a peer whose receive
        raised :class:`~mpc.errors.PeerUnavailable` or that stayed silent is left out.

    Raises:
        MPCError: any other error of a receive (e.g. the session failed).
    """
    tasks = {p: asyncio.ensure_future(rnd.recv(p)) for p in peers}
    if not tasks:
        return {}
    _, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    out: dict[int, Any] = {}
    for p, task in tasks.items():
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is None:
            out[p] = task.result()
        elif not isinstance(exc, PeerUnavailable):
            raise exc
    return out


async def send_each(rnd: Round, payloads: Mapping[int, Any]) -> set[int]:
    """Send each peer its payload; returns the peers that turned out to be unreachable."""
    items = list(payloads.items())
    results = await asyncio.gather(*(rnd.send(p, m) for p, m in items), return_exceptions=True)
    failed: set[int] = set()
    for (p, _), res in zip(items, results):
        if isinstance(res, PeerUnavailable):
            failed.add(p)
        elif isinstance(res, BaseException):
            raise res
    return failed


async def _server_stage(
    run: SecAggRun,
    recv_round: str,
    send_round: str,
    live: list[int],
    step: Callable[[dict[int, Any]], tuple[T, dict[int, Any]]],
) -> tuple[T, list[int]]:
    """Collect ``recv_round`` from ``live``, apply ``step``, send its output in ``send_round``;
    clients that dropped get a stop notice; on an error every live client gets one too."""
    got = await collect(run.rounds[recv_round], live, run.plan.params.stage_timeout)
    try:
        state, out = step(got)
    except MPCError as exc:
        await send_each(run.rounds[send_round], {u: messages.stop(exc.code) for u in live})
        raise
    notices = {u: messages.stop(messages.STOP_EXCLUDED) for u in live if u not in out}
    failed = await send_each(run.rounds[send_round], {**out, **notices})
    return state, sorted(u for u in out if u not in failed)


async def run_server(run: SecAggRun) -> SecAggResult:
    """The aggregator's whole run: three collect-and-answer stages, the unmask answers (after
    the clients' consistency round, hence the doubled deadline), then the optional release."""
    plan = run.plan
    live = list(plan.clients)
    keys, live = await _server_stage(
        run, "advertise", "roster", live,
        lambda got: server_collect_keys(plan, run.context, run.graph, got),
    )
    shares, live = await _server_stage(
        run, "shares", "forward", live, lambda got: server_relay_shares(keys, got)
    )
    masked, live = await _server_stage(
        run, "masked", "survivors", live, lambda got: server_collect_masked(shares, got)
    )
    got = await collect(run.rounds["unmask"], live, 2 * plan.params.stage_timeout)
    try:
        result = server_unmask(masked, got)
    except MPCError as exc:
        if plan.params.release:
            await send_each(run.rounds["result"], {u: messages.stop(exc.code) for u in live})
        raise
    if plan.params.release:
        await send_each(run.rounds["result"], {u: result_message(result) for u in masked.u3})
    return result


async def _from_server(run: SecAggRun, name: str) -> Any:
    return await run.rounds[name].recv(run.plan.server)


async def _to_server(run: SecAggRun, name: str, payload: Any) -> None:
    await run.rounds[name].send(run.plan.server, payload)


async def run_client_setup(run: SecAggRun) -> ClientSetup:
    """Client stage 0: make the key pairs and advertise them to each neighbour directly, then
    to the aggregator (in that order, so a client the aggregator heard from has already handed
    its direct advertisements to the transport)."""
    state, msg = client_setup(run.plan, run.session.party_id, run.context, run.graph, run.prg)
    await send_each(run.rounds["advertise"], {v: msg for v in sorted(state.neighbors)})
    await _to_server(run, "advertise", msg)
    return state


async def run_client_share_keys(run: SecAggRun, state: ClientSetup) -> ClientSharedKeys:
    """Client stage 1: receive the roster and the listed neighbours' direct keys, cross-check
    them, send the encrypted shares. On an inconsistency the aggregator gets a stop notice
    carrying only the error's code, and the client raises."""
    roster = await _from_server(run, "roster")
    listed = list(roster_members(state, roster))
    # Listed neighbours advertised to us before the aggregator heard them: normally already here.
    direct = await collect(run.rounds["advertise"], listed, run.plan.params.stage_timeout)
    try:
        new, msg = client_share_keys(state, roster, direct, run.prg)
    except (AbortError, ProtocolViolation) as exc:
        await send_each(run.rounds["shares"], {run.plan.server: messages.stop(exc.code)})
        raise
    await _to_server(run, "shares", msg)
    return new


async def run_client_mask(run: SecAggRun, state: ClientSharedKeys, x: Any) -> ClientMasked:
    """Client stage 2: receive the partners' shares, send the masked input."""
    vec = check_input(x, run.plan)
    new, y = client_mask(state, await _from_server(run, "forward"), vec)
    await _to_server(run, "masked", y)
    return new


async def run_client_consistency(run: SecAggRun, state: ClientMasked) -> ClientAgreed:
    """Client stage 3a-b: receive ``U3``, send its digest to each peer directly, check theirs.
    On an inconsistency the aggregator gets a stop notice carrying only the error's code (in
    place of the unmask message), and the client raises."""
    view, digest = client_survivors(state, await _from_server(run, "survivors"))
    rnd = run.rounds["consistency"]
    await send_each(rnd, {w: digest for w in view.peers})  # unreachable peers just dropped
    got = await collect(rnd, list(view.peers), run.plan.params.stage_timeout)
    try:
        return client_check_digests(view, got)
    except (AbortError, ProtocolViolation) as exc:
        await send_each(run.rounds["unmask"], {run.plan.server: messages.stop(exc.code)})
        raise


async def run_client_unmask(run: SecAggRun, state: ClientAgreed) -> None:
    """Client stage 3c: reveal the shares the agreed survivor list asks for."""
    await _to_server(run, "unmask", client_unmask(state))


async def run_client_result(run: SecAggRun, state: ClientMasked) -> SecAggResult:
    """Client stage 4: receive the released sum."""
    return client_result(state, await _from_server(run, "result"))


async def _run_client(run: SecAggRun, x: Any) -> SecAggResult | None:
    check_input(x, run.plan)  # refuse bad input before sending anything
    state0 = await run_client_setup(run)
    state1 = await run_client_share_keys(run, state0)
    state2 = await run_client_mask(run, state1, x)
    await run_client_unmask(run, await run_client_consistency(run, state2))
    if run.plan.params.release:
        return await run_client_result(run, state2)
    return None


async def secure_aggregate(
    session: Session, x: Any, params: SecAggParams
) -> SecAggResult | None:
    """Sum the clients' vectors in Z_2^bits; only the sum of the survivors is revealed.

    Every party of the session calls this with the same ``params``: the aggregator
    (``params.server``) with ``x=None`` (it holds no data), every client with its vector. See
    :mod:`protocols.secagg` for the protocol, threat model and costs.

    Args:
        session: this party's session.
        x: a client's vector (integers in [0, 2^bits), shape ``(dim,)``); ``None`` at the
            aggregator.
        params: the run's parameters.

    Returns:
        At the aggregator, the :class:`SecAggResult` (sum, survivors, live sets per stage). At a
        client, the released result if ``params.release``, else ``None``.

    Raises:
        ConfigError: invalid parameters or input (raised before anything is sent).
        InsecureConfiguration: a threshold of at most half the neighbours.
        AbortError: too many dropouts, fewer than ``t`` shares of a secret, inconsistent
            shares, a client reporting an abort, or (at a client) relayed public keys that
            differ from those the neighbours sent directly, a listed neighbour whose direct
            keys are missing, a peer holding another survivor list, fewer than
            ``plan.quorum`` holders of a partner vouching for ours, or the aggregator stopped
            the run or dropped this client.
        ProtocolViolation: a malformed or tampered message (from the aggregator or a peer).
        PeerUnavailable: at a client, the aggregator went silent.
    """
    return await run_party(open_run(session, params), x)


async def run_party(run: SecAggRun, x: Any) -> SecAggResult | None:
    """Run an opened run as this party (the aggregator with ``x=None``, a client with its
    vector); :func:`secure_aggregate` is ``run_party(open_run(session, params), x)``."""
    if run.session.party_id == run.plan.server:
        if x is not None:
            raise ConfigError("the aggregator holds no data: call it with x=None")
        return await run_server(run)
    return await _run_client(run, x)

