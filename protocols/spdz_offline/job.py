"""What a node runs before an SPDZ job: the dealer-free provider by default, with its store.

:func:`preprocessing_for_job` is the one entry point for jobs on nodes. Every party of the job
calls it (SPMD) with the same ``need`` (the job's :class:`Requirements`, part of the agreed job)
and the same ``insecure_dealer`` flag (the job's config asks for the test dealer and the node's
config allows it; a node that does not allow it refuses the job before it starts, so the flag
is the same everywhere). Leftover material is persisted with :func:`protocols.spdz_offline.save`
at the end of the job and reloaded by the next job among the same parties.
"""

from __future__ import annotations

import os

from mpc.errors import ConfigError
from mpc.session import Session
from protocols.spdz.dealer import insecure_dealer as make_insecure_dealer
from protocols.spdz.preprocessing import Requirements, SpdzPreprocessing

from protocols.spdz_offline.provider import DEFAULT_TAU, DealerFreePreprocessing
from protocols.spdz_offline.store import try_load

__all__ = ["preprocessing_for_job"]


async def preprocessing_for_job(
    session: Session,
    need: Requirements,
    *,
    insecure_dealer: bool = False,
    store_path: str | os.PathLike[str] | None = None,
    storage_key: bytes | None = None,
    tau: int = DEFAULT_TAU,
) -> SpdzPreprocessing:
    """This party's provider for a job, with ``need`` produced and reserved.

    Args:
        session: the job's session.
        need: what the job consumes.
        insecure_dealer: use the :class:`~protocols.spdz.dealer.InsecureDealer` (tests and
            benchmarks only; the node decides: job asks and node config allows).
        store_path: this node's store for this party set (e.g. ``<state>/preprocessing/<hash
            of the party names>.store``); material left there by an earlier job is reloaded if
            every party has the matching store, and is consumed exactly once.
        storage_key: the node's 32-byte storage key (required with ``store_path``).
        tau: receiver bits per multiplied entry (security parameter of the extraction).

    Returns:
        A dealer-free provider (or the insecure dealer), ``need`` reserved.

    Raises:
        ConfigError: a store path without a key.
        MacCheckFailure, AbortError, PeerUnavailable: production failed (see the package).
    """
    if insecure_dealer:
        return await make_insecure_dealer(session, allow_insecure=True, capacity=need)
    provider = None
    if store_path is not None:
        if storage_key is None:
            raise ConfigError("a preprocessing store needs the node's storage key")
        provider = await try_load(session, store_path, storage_key)
    if provider is None:
        provider = await DealerFreePreprocessing.create(session, tau=tau)
    missing = provider.deficit(need)
    if missing.counts():
        await provider.produce(missing)
    provider.reserve(need)
    return provider
