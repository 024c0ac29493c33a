"""The event loop of long-running party processes (nodes and harness workers).

Party processes run on uvloop (libuv's event loop with its own TLS transport, written in
Cython) where it is installed: a secure computation's rounds are many small messages, and the
per-message work of the standard loop's selector and TLS layer is a large part of a party's CPU
in them (uvloop cut a three-party training epoch's CPU by ~15% here). Library code never depends
on the loop: it only uses the asyncio API, so the standard loop (e.g. on Windows, where uvloop
does not exist) runs everything the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop if it is installed, else on the standard loop."""
    try:
        import uvloop
    except ImportError:  # not a platform uvloop supports: the standard loop does the same work
        return asyncio.run(main)
    return uvloop.run(main)

