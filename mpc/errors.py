"""The one error tree of the runtime.

Every layer raises from this tree; nothing raises a bare ``ValueError`` for a security-relevant
failure. Which layer raises what::

    MPCError                      base of everything below
    +-- ConfigError               bad node config, federation file, job manifest, parameters
    +-- TransportError            transport/: moving bytes and knowing who sent them
    |   +-- PeerUnavailable       a peer is unreachable or silent past its timeout
    |   +-- HandshakeFailed       TLS / identity check failed (impostor, unknown peer, bad hello)
    |   +-- FrameError            bytes that are not a valid frame (not msgpack, bad array ext, ...)
    |       +-- FrameTooLarge     a frame or message over the configured size limit
    +-- ProtocolViolation         a peer sent something the protocol does not allow
    |                             (wrong shape, unknown job, replayed message, buffer overflow)
    +-- AbortError                the computation was aborted; nothing further is revealed
    |   +-- MacCheckFailure       a SPDZ MAC check failed: some party cheated or a share was tampered
    +-- PreprocessingExhausted    a preprocessing provider has no more material of a kind
    +-- InsecureConfiguration     an insecure component was used without being explicitly allowed
    +-- PolicyRefused             a node's policy refused a job (names the rule)
    +-- BudgetExceeded            a job would overspend a dataset's privacy budget

Errors that are reported to peers carry only their ``code`` (see :func:`error_from_code`), never
their message, which may contain details that are sensitive.
"""

from __future__ import annotations

__all__ = [
    "MPCError",
    "ConfigError",
    "TransportError",
    "PeerUnavailable",
    "HandshakeFailed",
    "TLSFailure",
    "FrameError",
    "FrameTooLarge",
    "ProtocolViolation",
    "AbortError",
    "MacCheckFailure",
    "PreprocessingExhausted",
    "InsecureConfiguration",
    "PolicyRefused",
    "BudgetExceeded",
    "error_from_code",
]


class MPCError(Exception):
    """Base class of every error raised by the runtime.

    Attributes:
        code: a short stable identifier that is safe to send to a peer.
    """

    code = "mpc-error"


class ConfigError(MPCError):
    """A configuration, federation file, manifest or parameter is missing or invalid."""

    code = "config"


class TransportError(MPCError):
    """Moving bytes between parties failed."""

    code = "transport"


class PeerUnavailable(TransportError):
    """A peer could not be reached, or stayed silent past the receive timeout.

    Attributes:
        peer: the name (or id, as a string) of the peer, when known.
    """

    code = "peer-unavailable"

    def __init__(self, message: str, peer: str | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class HandshakeFailed(TransportError):
    """A connection was refused during TLS or identity verification."""

    code = "handshake-failed"


class TLSFailure(TransportError):
    """A TLS handshake failed or did not finish in time, or a received record did not
    authenticate; the connection is dropped."""

    code = "tls-failure"


class FrameError(TransportError):
    """Bytes received are not a valid frame (not msgpack, bad array header, wrong length...)."""

    code = "bad-frame"


class FrameTooLarge(FrameError):
    """A frame or reassembled message exceeds the configured size limit."""

    code = "frame-too-large"


class ProtocolViolation(MPCError):
    """A peer sent a message the protocol does not allow (shape, tag, job, replay, overflow)."""

    code = "protocol-violation"


class AbortError(MPCError):
    """The computation was aborted; no further values are revealed."""

    code = "abort"


class MacCheckFailure(AbortError):
    """A SPDZ MAC check failed: a share or MAC was tampered with, or a party cheated."""

    code = "mac-check-failure"


class PreprocessingExhausted(MPCError):
    """A preprocessing provider ran out of correlated randomness of some kind."""

    code = "preprocessing-exhausted"


class InsecureConfiguration(MPCError):
    """An insecure component (e.g. the test dealer) was used without being explicitly allowed."""

    code = "insecure-configuration"


class PolicyRefused(MPCError):
    """A node's policy refused a job.

    Attributes:
        rule: the name of the policy rule that refused.
    """

    code = "policy-refused"

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message)
        self.rule = rule


class BudgetExceeded(PolicyRefused):
    """A job would spend more privacy budget than a dataset has left."""

    code = "budget-exceeded"


def _all_subclasses(cls: type[MPCError]) -> list[type[MPCError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_from_code(code: str, message: str = "") -> MPCError:
    """Rebuild an error received from a peer from its code.

    Args:
        code: the ``code`` attribute the peer sent.
        message: a local description to attach (never the peer's text).

    Returns:
        An instance of the matching class, or a plain :class:`ProtocolViolation` for an
        unknown code (a peer sending unknown codes is itself misbehaving).
    """
    for cls in _all_subclasses(MPCError):
        if cls.code == code:
            return cls(message or f"peer reported {code}")
    return ProtocolViolation(f"peer reported unknown error code {code!r}")
