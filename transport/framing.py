"""Sans-I/O framing (API stub; see helper A)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrameLimits"]


@dataclass(frozen=True)
class FrameLimits:
    """Size limits, checked before allocation.

    Attributes:
        max_frame_bytes: largest single frame (one websocket message); messages are chunked below it.
        max_message_bytes: largest reassembled message.
    """

    max_frame_bytes: int = 1 << 20
    max_message_bytes: int = 1 << 30
