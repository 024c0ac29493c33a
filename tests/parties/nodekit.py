"""Helpers for tests that run in-process nodes of a local federation (real TLS websockets)."""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from parties.config import NodeConfig, load_node_config
from parties.local import create_local_federation
from parties.node import Node


def allow_insecure_dealer(name: str, config: NodeConfig) -> NodeConfig:
    """A node policy that lets jobs ask for the insecure test dealer (speed, in tests only)."""
    return dataclasses.replace(config, policy=dataclasses.replace(config.policy, allow_insecure_dealer=True))


@asynccontextmanager
async def running_nodes(
    directory: Path,
    names: Sequence[str],
    datasets: dict[str, Any],
    *,
    configure: Callable[[str, NodeConfig], NodeConfig] = lambda name, config: config,
) -> AsyncIterator[dict[str, Node]]:
    """Start one node per name (configs adjusted by ``configure``); stop them all at the end."""
    parties = create_local_federation(directory, names, recv_timeout=20.0, datasets=datasets)
    started: dict[str, Node] = {}
    try:
        for p in parties:
            node = Node(configure(p.name, load_node_config(p.config_path)))
            await node.start()
            started[p.name] = node
        yield started
    finally:
        for node in started.values():
            await node.stop()
