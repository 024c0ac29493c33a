"""The core of the MPC runtime: errors, contracts, rings, sharing, PRG and the Session.

This package imports nothing else of ours. Application code imports ``mpc`` for the
programming model and ``parties`` to run programs.
"""

from mpc.contracts import Channel, ChannelStats, Mesh, Payload, Preprocessing
from mpc.errors import *  # noqa: F401,F403  (the error tree is part of the public API)
from mpc.errors import __all__ as _errors_all
from mpc.prg import PRG
from mpc.session import Program, Round, Session

__all__ = [
    "Channel",
    "ChannelStats",
    "Mesh",
    "Payload",
    "Preprocessing",
    "PRG",
    "Program",
    "Round",
    "Session",
    *_errors_all,
]
