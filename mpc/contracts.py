"""Contracts (``typing.Protocol``) that the other layers implement.

``mpc`` imports nothing of ours; ``transport`` implements :class:`Channel` and :class:`Mesh`,
``protocols`` consume them, ``parties`` wires concrete implementations together.

A *payload* is anything msgpack can carry plus numpy arrays of an allowed dtype: ``None``,
``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``, lists, dicts with ``str`` keys, and
``np.ndarray``. Arrays arrive as arrays of the same dtype and shape (possibly read-only views).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

__all__ = ["Payload", "ChannelStats", "Channel", "Mesh", "Preprocessing", "SecretEngine", "SECRET_ENGINE"]

Payload = Any
"""A msgpack-encodable value, possibly containing numpy arrays (see module docstring)."""


@dataclass
class ChannelStats:
    """Traffic counters of one channel (one party's view of one session/job).

    Bytes are counted as encoded on the wire by this party's transport, framing included.
    """

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    rounds: int = 0
    per_peer_bytes_sent: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy of the counters."""
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "rounds": self.rounds,
            "per_peer_bytes_sent": dict(self.per_peer_bytes_sent),
        }


@runtime_checkable
class Channel(Protocol):
    """Tagged point-to-point messaging among the parties of one session.

    Parties are numbered ``0..n_parties-1`` in the order of :attr:`parties` (names). Messages
    between a pair of parties are delivered exactly once and matched by tag, so a message that
    arrives before its ``recv`` is buffered (bounded). Receiving the same tag twice from a peer is
    a :class:`~mpc.errors.ProtocolViolation`.
    """

    @property
    def party_id(self) -> int:
        """This party's index in :attr:`parties`."""
        ...

    @property
    def n_parties(self) -> int:
        """Number of parties in the session."""
        ...

    @property
    def parties(self) -> tuple[str, ...]:
        """Names of the session's parties; index = party id."""
        ...

    @property
    def session_id(self) -> str:
        """Identifier of the session (unique per job)."""
        ...

    @property
    def stats(self) -> ChannelStats:
        """Live traffic counters of this channel."""
        ...

    async def send(self, peer: int, tag: str, payload: Payload) -> None:
        """Send ``payload`` to party ``peer`` under ``tag``.

        Returns once the message is queued for delivery (it may block for backpressure). The
        payload is copied when it is queued, so it must not change until this call returns
        (a concurrent task must not write into its arrays meanwhile); after that the caller may
        reuse them. Read-only arrays (``flags.writeable`` false) are handed over instead: a
        transport may send them from their memory, without a copy, until the peer has the
        message, so the caller must not write to them (through any view) afterwards. Mark an
        array read-only only to send it so (e.g. a large message built for one send).

        Raises:
            PeerUnavailable: the peer stayed unreachable past the timeout.
            ProtocolViolation: ``peer`` is not another party of this session.
        """
        ...

    async def recv(self, peer: int, tag: str) -> Payload:
        """Wait for the message from ``peer`` under ``tag``.

        Raises:
            PeerUnavailable: nothing arrived within the channel's timeout, or the peer is gone.
            ProtocolViolation: the peer sent something invalid for this session.
        """
        ...

    async def close(self) -> None:
        """Release the session's buffers; later sends and receives raise."""
        ...


@runtime_checkable
class Mesh(Protocol):
    """A party's connections to the other members of its federation."""

    @property
    def local_name(self) -> str:
        """This party's name in the federation."""
        ...

    def channel(self, session_id: str, parties: Sequence[str]) -> Channel:
        """Open the channel of session ``session_id`` among ``parties`` (names, including ours)."""
        ...


class Preprocessing(Protocol):
    """A source of correlated randomness for the online phase (one method per resource).

    The concrete share types and the exact methods are defined by the arithmetic engine
    (``protocols.spdz``); providers are the ``InsecureDealer`` (tests, online benchmarks; refuses
    to run unless ``allow_insecure=True``) and the dealer-free OT-based provider. Every provider
    reports what it can still supply so a job can check its needs before it starts.
    """

    def remaining(self) -> dict[str, int]:
        """Units of each resource kind still available (e.g. ``{"triples": 10_000}``)."""
        ...


SECRET_ENGINE = "secret-engine"
"""The key of the secret-arithmetic engine in ``Session.resources`` (see :class:`SecretEngine`)."""


@runtime_checkable
class SecretEngine(Protocol):
    """Secret-shared arithmetic attached to a session: the programming model's back end.

    An engine (e.g. ``protocols.spdz``'s, attached by ``spdz.setup(session, provider)``) lives
    in ``session.resources[SECRET_ENGINE]``; :meth:`mpc.session.Session.input` and
    :meth:`~mpc.session.Session.reveal` delegate to it, so an SPMD program can be written
    against ``mpc`` alone::

        x = await s.input(my_array, owner="hospital-a")   # every party calls it
        y = (x * x).sum()                                 # numpy-like secret arrays
        total = await s.reveal(y, to=["hospital-b"])      # None at the other parties

    The secret arrays an engine returns are its own type; they support numpy-like arithmetic
    (``+ - * @``, comparisons, ``sum``...) as the engine documents.
    """

    async def input(
        self, value: Any, owner: int | str, *, shape: tuple[int, ...] | None = None, frac_bits: int | None = None
    ) -> Any:
        """Secret-share ``owner``'s ``value`` (every party calls it; others' values are ignored).

        Raises:
            ConfigError: an invalid value at the owner, or an unknown owner.
        """
        ...

    async def reveal(self, x: Any, to: Any = None) -> Any:
        """Open ``x`` (a secret array or a sequence of them) to every party or to ``to``.

        Returns:
            The plaintext at a receiver, ``None`` at the other parties.

        Raises:
            AbortError: a check failed (``MacCheckFailure`` for a tampered value); nothing is
                revealed.
        """
        ...

    async def flush(self) -> None:
        """Run every recorded operation now."""
        ...
