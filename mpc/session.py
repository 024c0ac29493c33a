"""The Session: one party's handle on one joint computation.

Every party runs the same program (SPMD) with its own :class:`Session`. A protocol allocates a
:class:`Round` for each exchange of messages; the round's tag is deterministic — the protocol path
plus a per-path counter — so all parties agree on it without coordination, and a message that
arrives before its round is simply buffered by the channel.

Every party must allocate the same rounds in the same order, including parties that neither send
nor receive in that round (they just do not use it).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, Sequence

from mpc.contracts import SECRET_ENGINE, Channel, ChannelStats, Payload, SecretEngine
from mpc.errors import ConfigError, ProtocolViolation
from mpc.prg import PRG

__all__ = ["Session", "Round", "Program"]


class Round:
    """One communication round of a session, identified by a deterministic tag."""

    __slots__ = ("_session", "tag", "_counted")

    def __init__(self, session: Session, tag: str) -> None:
        self._session = session
        self.tag = tag
        self._counted = False

    def _count(self) -> None:
        if not self._counted:
            self._counted = True
            self._session.channel.stats.rounds += 1

    async def send(self, peer: int, payload: Payload) -> None:
        """Send ``payload`` to party ``peer`` in this round."""
        self._count()
        session = self._session
        session._check_peer(peer)
        await session.channel.send(peer, self.tag, payload)

    async def recv(self, peer: int) -> Payload:
        """Receive this round's message from party ``peer``."""
        self._count()
        session = self._session
        session._check_peer(peer)
        return await session.channel.recv(peer, self.tag)

    async def _recv_all(self, peers: Sequence[int]) -> dict[int, Payload]:
        """Receive this round's message from each of ``peers``, in turn.

        Awaiting in turn costs no task per receive; the messages arrive concurrently anyway
        (the channel buffers them). Each receive has the channel's timeout from when it starts,
        so a silent peer raises ``PeerUnavailable`` naming it (the first silent one in ``peers``
        order), after at most ``len(peers)`` timeouts if the others are slow but alive; a
        receive that fails leaves no other receive of the round pending.
        """
        self._count()
        check, recv, tag = self._session._check_peer, self._session.channel.recv, self.tag
        out: dict[int, Payload] = {}
        for p in peers:
            check(p)
            out[p] = await recv(p, tag)
        return out


class Session:
    """One party's view of one joint computation.

    Args:
        channel: the transport channel among the session's parties.
        prg: this party's private randomness; a fresh CSPRNG-seeded PRG if omitted.
        path: the protocol path prefix of tags (sub-protocols extend it with :meth:`child`).
        resources: named objects the program may use (e.g. a preprocessing provider).
        offload: let sub-protocols run their large local computations (e.g. an OT extension's
            hashing of a batch) in a worker thread, so that the event loop keeps moving bytes
            meanwhile. That pays where the party has a core to spare; where it has not (several
            parties on one machine, one core each), the threads only contend with the loop and
            the other parties, and computing on the loop is faster. Party processes set it from the
            cores they have.

    Attributes:
        channel: the underlying channel.
        prg: private randomness of this party.
        resources: dict of named resources shared by this session and its children.
        offload: as the argument (children inherit it).
    """

    def __init__(
        self,
        channel: Channel,
        *,
        prg: PRG | None = None,
        path: str = "",
        resources: dict[str, Any] | None = None,
        offload: bool = True,
        _counters: dict[str, int] | None = None,
    ) -> None:
        self.channel = channel
        self.offload = bool(offload)
        self.prg = prg if prg is not None else PRG()
        self.path = path
        self.resources: dict[str, Any] = resources if resources is not None else {}
        self._counters: dict[str, int] = _counters if _counters is not None else {}
        # A channel's parties are fixed: read them once (checked on every send and receive).
        self._party_id: int = channel.party_id
        self._n_parties: int = channel.n_parties
        self._others = tuple(p for p in range(self._n_parties) if p != self._party_id)

    @property
    def party_id(self) -> int:
        """This party's index."""
        return self._party_id

    @property
    def n_parties(self) -> int:
        """Number of parties."""
        return self._n_parties

    @property
    def parties(self) -> tuple[str, ...]:
        """Party names, index = party id."""
        return self.channel.parties

    @property
    def session_id(self) -> str:
        """The session's identifier."""
        return self.channel.session_id

    @property
    def stats(self) -> ChannelStats:
        """Traffic counters of the session."""
        return self.channel.stats

    @property
    def others(self) -> list[int]:
        """Ids of every other party, ascending."""
        return list(self._others)

    @property
    def engine(self) -> SecretEngine:
        """The secret-arithmetic engine attached to this session (``resources[SECRET_ENGINE]``).

        Raises:
            ConfigError: none is attached (e.g. call ``protocols.spdz.setup(session, provider)``).
        """
        engine = self.resources.get(SECRET_ENGINE)
        if engine is None or not isinstance(engine, SecretEngine):
            raise ConfigError("no secret engine attached to this session (e.g. protocols.spdz.setup)")
        return engine

    async def input(self, value: Any = None, *, owner: int | str, shape: tuple[int, ...] | None = None) -> Any:
        """Secret-share ``owner``'s array with the session's engine (every party calls it).

        Args:
            value: the owner's array; ignored (may be ``None``) at the other parties.
            owner: the owner's name or id.
            shape: the expected shape, checked at every party, if the program knows it.

        Returns:
            The engine's secret array.
        """
        return await self.engine.input(value, owner, shape=shape)

    async def reveal(self, x: Any, *, to: Any = None) -> Any:
        """Open secret arrays to every party, or to ``to`` (a name, an id or a list of them).

        Returns:
            The plaintext at a receiver, ``None`` at the other parties.
        """
        return await self.engine.reveal(x, to)

    def party_index(self, name_or_id: str | int) -> int:
        """Resolve a party name (or id) to its id.

        Raises:
            ConfigError: if the party is not in this session.
        """
        if isinstance(name_or_id, int):
            if not 0 <= name_or_id < self.n_parties:
                raise ConfigError(f"party id {name_or_id} not in session")
            return name_or_id
        try:
            return self.parties.index(name_or_id)
        except ValueError:
            raise ConfigError(f"party {name_or_id!r} not in session") from None

    def child(self, name: str) -> Session:
        """A sub-session for a sub-protocol: same channel and counters, tags under ``name``."""
        if not name or "/" in name or "#" in name:
            raise ConfigError(f"invalid protocol path component {name!r}")
        tag = self._next(name)
        return Session(
            self.channel,
            prg=self.prg,
            path=tag,
            resources=self.resources,
            offload=self.offload,
            _counters=self._counters,
        )

    def round(self, name: str) -> Round:
        """Allocate the next round named ``name`` (every party must allocate it)."""
        if not name or "/" in name or "#" in name:
            raise ConfigError(f"invalid round name {name!r}")
        return Round(self, self._next(name))

    def _next(self, name: str) -> str:
        key = f"{self.path}/{name}"
        k = self._counters.get(key, 0)
        self._counters[key] = k + 1
        return f"{key}#{k}"

    def _check_peer(self, peer: int) -> None:
        if not 0 <= peer < self._n_parties or peer == self._party_id:
            raise ProtocolViolation(f"invalid peer {peer} for party {self._party_id}")

    async def exchange(
        self, name: str, payload: Payload | Mapping[int, Payload], *, per_peer: bool = False
    ) -> dict[int, Payload]:
        """All-to-all round: send to every other party, receive from every other party.

        Args:
            name: round name.
            payload: what to send; with ``per_peer=True`` a mapping peer id -> payload.
            per_peer: whether ``payload`` is a per-peer mapping.

        Returns:
            Mapping peer id -> the payload received from it.
        """
        rnd = self.round(name)
        others = self._others
        if per_peer:
            if not isinstance(payload, Mapping) or set(payload) != set(others):
                raise ConfigError("per-peer payload must map every other party id")
            for p in others:
                await rnd.send(p, payload[p])
        else:
            for p in others:
                await rnd.send(p, payload)
        # Every message is out before the first receive waits (see _recv_all).
        return await rnd._recv_all(others)

    async def broadcast(self, name: str, payload: Payload, *, sender: int) -> Payload:
        """``sender`` sends ``payload`` to everyone; every party returns it.

        Note: plain broadcast is not consistency-checked; actively secure protocols check
        that every receiver got the same value (e.g. by hashing in the MAC check).
        """
        rnd = self.round(name)
        if self.party_id == sender:
            for p in self.others:
                await rnd.send(p, payload)
            return payload
        return await rnd.recv(sender)

    async def gather(self, name: str, payload: Payload, *, receiver: int) -> dict[int, Payload] | None:
        """Everyone sends ``payload`` to ``receiver``, which returns all of them (by party id).

        Returns:
            At the receiver, mapping party id -> payload (its own included); elsewhere ``None``.
        """
        rnd = self.round(name)
        if self.party_id != receiver:
            await rnd.send(receiver, payload)
            return None
        out = await rnd._recv_all(self.others)
        out[self.party_id] = payload
        return dict(sorted(out.items()))


Program = Callable[[Session, Any], Awaitable[Any]]
"""An SPMD program: ``async def program(session, my_input) -> my_output``."""
