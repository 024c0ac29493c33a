"""The messages of SecAgg and their checks on receipt (every failure is a ProtocolViolation).

Payloads are msgpack dicts of bytes and numpy arrays. Layout, per stage:

=============  ================  ===========================================================
round          direction         payload
=============  ================  ===========================================================
advertise      client -> server  ``{"c": pk_enc (32 B), "s": pk_mask (32 B)}``; the same
               client -> client  message to each graph neighbour directly
roster         server -> client  ``{"ids": int64 (h,), "c": uint8 (h, 32), "s": uint8 (h, 32)}``
shares         client -> server  ``{"to": int64 (h,), "ct": uint8 (h, 96), "commit": 32 B}``
forward        server -> client  ``{"from": int64 (h',), "ct": uint8 (h', 96)}``
masked         client -> server  ``y``: the container dtype, shape ``(dim,)``
survivors      server -> client  ``{"u3": int64 (|U3|,)}``: the whole survivor set, the same for
                                 every client of ``U3``
consistency    client -> client  SHA-256 of the run and ``U3`` (32 B), to each client of ``U3``
                                 sharing a graph neighbour with the sender
unmask         client -> server  ``{"b_from": int64, "b": uint32 (a, 6), "sk_from": int64,
                                 "sk": uint32 (h' - a, 11)}``, or a stop notice
result         server -> client  ``{"sum": container dtype (dim,), "survivors": int64}``
=============  ================  ===========================================================

Any server -> client message may instead be ``{"stop": code}``: the client was dropped from the
run (``"excluded"``) or the aggregator aborted (the error's code). A client that aborts (keys or
survivor lists inconsistent) sends the aggregator ``{"stop": code}`` in place of its next
message (``shares`` or ``unmask``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpc.errors import AbortError, ProtocolViolation
from protocols.secagg import crypto
from protocols.secagg.shamir import PRIME, limbs_for

__all__ = [
    "SK_LIMBS",
    "B_LIMBS",
    "SHARE_PLAINTEXT_BYTES",
    "CT_BYTES",
    "STOP_EXCLUDED",
    "stop",
    "check_stop",
    "field",
    "ids_array",
    "bytes_field",
    "uint8_rows",
    "share_rows",
    "vector",
]

SK_LIMBS = limbs_for(crypto.KEY_BYTES)
B_LIMBS = limbs_for(crypto.SEED_BYTES)
SHARE_PLAINTEXT_BYTES = 4 * (SK_LIMBS + B_LIMBS)
CT_BYTES = crypto.NONCE_BYTES + SHARE_PLAINTEXT_BYTES + crypto.TAG_BYTES
STOP_EXCLUDED = "excluded"


def stop(code: str) -> dict[str, Any]:
    """The message telling a client it is out of the run (``code``: why)."""
    return {"stop": code}


def check_stop(payload: Any, stage: str) -> None:
    """Raise if a server message is a stop notice.

    Raises:
        AbortError: the aggregator excluded this client or aborted the run.
    """
    if isinstance(payload, dict) and "stop" in payload:
        code = payload["stop"]
        if code == STOP_EXCLUDED:
            raise AbortError(f"the aggregator dropped this client at stage {stage}")
        raise AbortError(f"the aggregator aborted at stage {stage} ({str(code)[:40]})")


def field(payload: Any, key: str, sender: int) -> Any:
    """``payload[key]`` of a dict payload."""
    if not isinstance(payload, dict) or key not in payload:
        raise ProtocolViolation(f"party {sender} sent a message without {key!r}")
    return payload[key]


def ids_array(value: Any, sender: int, what: str) -> np.ndarray:
    """A 1-d int64 array of strictly increasing party ids."""
    if not isinstance(value, np.ndarray) or value.dtype != np.int64 or value.ndim != 1:
        raise ProtocolViolation(f"party {sender} sent {what} that is not an int64 id list")
    if value.size > 1 and np.any(np.diff(value) <= 0):
        raise ProtocolViolation(f"party {sender} sent {what} that is not sorted and distinct")
    return value


def bytes_field(value: Any, length: int, sender: int, what: str) -> bytes:
    """A bytes value of an exact length."""
    if not isinstance(value, (bytes, bytearray)) or len(value) != length:
        raise ProtocolViolation(f"party {sender} sent {what} that is not {length} bytes")
    return bytes(value)


def uint8_rows(value: Any, rows: int, width: int, sender: int, what: str) -> np.ndarray:
    """A uint8 array of shape ``(rows, width)``."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8:
        raise ProtocolViolation(f"party {sender} sent {what} that is not a uint8 array")
    if value.shape != (rows, width):
        raise ProtocolViolation(
            f"party {sender} sent {what} of shape {value.shape}, expected {(rows, width)}"
        )
    return value


def share_rows(value: Any, rows: int, limbs: int, sender: int, what: str) -> np.ndarray:
    """A uint32 array ``(rows, limbs)`` of field elements."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint32:
        raise ProtocolViolation(f"party {sender} sent {what} that is not a uint32 array")
    if value.shape != (rows, limbs):
        raise ProtocolViolation(
            f"party {sender} sent {what} of shape {value.shape}, expected {(rows, limbs)}"
        )
    if np.any(value >= PRIME):
        raise ProtocolViolation(f"party {sender} sent {what} outside the field")
    return value


def vector(value: Any, dtype: np.dtype, dim: int, bits: int, sender: int) -> np.ndarray:
    """A ring vector: ``dtype``, shape ``(dim,)``, values below 2^bits."""
    if not isinstance(value, np.ndarray) or value.dtype != dtype:
        raise ProtocolViolation(f"party {sender} sent a vector that is not {dtype}")
    if value.shape != (dim,):
        raise ProtocolViolation(f"party {sender} sent a vector of shape {value.shape}")
    if bits < dtype.itemsize * 8 and np.any(value >> dtype.type(bits)):
        raise ProtocolViolation(f"party {sender} sent a vector outside Z_2^{bits}")
    return value
