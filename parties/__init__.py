"""The party process: node, config, CLI, jobs, policy, audit, local federations, test harness.

``parties.run_local(program, inputs, transport="memory" | "websocket" | "processes")`` runs an
SPMD program on a local federation (see :mod:`parties.testing`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_local", "run_parties"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a small part of ``parties`` (e.g. the config) stays cheap.
    if name in __all__:
        from parties import testing

        return getattr(testing, name)
    raise AttributeError(name)
