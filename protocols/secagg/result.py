"""What a secure aggregation run returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SecAggResult"]


@dataclass(frozen=True)
class SecAggResult:
    """The sum of the survivors' vectors and who they were.

    Attributes:
        total: ``sum_{u in survivors} x_u mod 2^bits`` in the plan's container dtype.
        survivors: the clients whose inputs are in ``total`` (ascending).
        live: at the aggregator, the clients still in the run after each stage
            (``"advertise"``, ``"share-keys"``, ``"masked-input"``, ``"unmask"``); empty at clients.
    """

    total: np.ndarray
    survivors: tuple[int, ...]
    live: dict[str, tuple[int, ...]] = field(default_factory=dict)
