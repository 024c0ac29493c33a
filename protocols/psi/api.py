"""The public PSI entry points: intersection, cardinality, private join, for 2 or more parties.

Every party of the session calls the same function with its own identifiers and the same
:class:`~protocols.psi.config.PsiConfig`, mode and receivers (SPMD). The first round (*hello*)
exchanges a digest of those parameters and every party's set size; any disagreement raises
:class:`~mpc.errors.ProtocolViolation` before any identifier-derived value is sent. Two parties
run :mod:`protocols.psi.two_party`, three or more :mod:`protocols.psi.multi_party`, and
``protocol="ot"`` :mod:`protocols.psi.kkrt` (see their docstrings for the security model,
leakage, rounds and bytes).

Bad local input (see :mod:`protocols.psi.identifiers`) raises
:class:`~mpc.errors.ConfigError` before the hello, so nothing is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, Sequence

import numpy as np

from mpc.checks import check_int
from mpc.compiled import available_cores
from mpc.errors import ConfigError, ProtocolViolation
from mpc.session import Session
from protocols.psi.config import Mode, PsiConfig, check_receivers
from protocols.psi.group import GroupEngine, GroupPool
from protocols.psi.identifiers import PreparedSet, prepare_identifiers
from protocols.psi.kkrt import kkrt_psi
from protocols.psi.multi_party import multi_party_psi
from protocols.psi.streams import Patience, run_all
from protocols.psi.two_party import two_party_psi

__all__ = ["psi_intersection", "psi_cardinality", "psi_join", "POOL_THRESHOLD", "Protocol"]

Protocol = Literal["ecdh", "ot"]
"""``"ecdh"``: :mod:`~protocols.psi.two_party` / :mod:`~protocols.psi.multi_party` (any number of
parties, every mode); ``"ot"``: :mod:`~protocols.psi.kkrt` (two parties, intersection and join,
much faster for large sets)."""

POOL_THRESHOLD = 1 << 15
"""With ``workers=None``, worker processes are used when this party's scalar multiplications
(about the sum of all set sizes) reach this many and more than one core is available."""

Identifiers = Sequence[str | bytes] | PreparedSet


async def psi_intersection(
    session: Session,
    identifiers: Identifiers,
    config: PsiConfig,
    *,
    receivers: Sequence[int] | None = None,
    protocol: Protocol = "ecdh",
    workers: int | None = None,
    pool: GroupPool | None = None,
) -> np.ndarray | None:
    """The rows of this party's input whose identifier every party has.

    Args:
        session: this party's session (2 or more parties).
        identifiers: this party's identifiers, one per row (``str`` or UTF-8 ``bytes``), or a
            set from :func:`~protocols.psi.identifiers.prepare_identifiers` with ``config``.
        config: the job's parameters, identical at every party.
        receivers: party ids that learn the result; every party if ``None``.
        protocol: ``"ecdh"`` (default) or ``"ot"`` (two parties only; the lowest receiver id
            is the OPRF receiver), see :data:`Protocol`.
        workers: processes for the group operations: ``None`` chooses (all cores for large
            sets, else a thread), ``1`` never starts processes, ``k`` starts ``k``.
        pool: an existing :class:`~protocols.psi.group.GroupPool` to use (overrides ``workers``).

    Returns:
        At a receiver, the matching input rows (int64, ascending; with
        ``duplicates="keep-first"`` the first row of each identifier); ``None`` elsewhere.

    Raises:
        ConfigError: bad parameters or identifiers (before any message).
        ProtocolViolation: parties disagree on the parameters, or a peer sent a malformed or
            invalid message.
        PeerUnavailable: a peer stayed silent past ``config.max_wait_seconds``.
    """
    out = await _run(session, identifiers, config, "intersection", receivers, protocol, workers, pool)
    return None if out is None else np.asarray(out, dtype=np.int64)


async def psi_cardinality(
    session: Session,
    identifiers: Identifiers,
    config: PsiConfig,
    *,
    receivers: Sequence[int] | None = None,
    workers: int | None = None,
    pool: GroupPool | None = None,
) -> int | None:
    """The size of the intersection of all parties' sets, and nothing else about it.

    Arguments, errors: as :func:`psi_intersection`.

    Returns:
        At a receiver the intersection's size; ``None`` elsewhere. (With 3 or more parties the
        leader, party 0, learns more: see :mod:`protocols.psi.multi_party`.)
    """
    out = await _run(session, identifiers, config, "cardinality", receivers, "ecdh", workers, pool)
    return None if out is None else int(out)


async def psi_join(
    session: Session,
    identifiers: Identifiers,
    config: PsiConfig,
    *,
    protocol: Protocol = "ecdh",
    workers: int | None = None,
    pool: GroupPool | None = None,
) -> np.ndarray:
    """Private join: the matching rows of every party, in one order common to all parties.

    Row ``k`` of every party's result holds the same identifier, so each party can take its
    records at those rows and feed them, aligned, into a later joint computation (e.g. a SPDZ
    job). Every party learns which of its own rows match (the intersection) and nothing about
    the others' non-matching identifiers. The common order is pseudo-random and fresh per job.

    Arguments, errors: as :func:`psi_intersection` (every party receives).

    Returns:
        The matching input rows (int64) in the common order.
    """
    out = await _run(session, identifiers, config, "join", None, protocol, workers, pool)
    if out is None:  # every party receives in a join
        raise ConfigError("join produced no output")
    return np.asarray(out, dtype=np.int64)


async def _run(
    session: Session,
    identifiers: Identifiers,
    config: PsiConfig,
    mode: Mode,
    receivers: Sequence[int] | None,
    protocol: Protocol,
    workers: int | None,
    pool: GroupPool | None,
) -> Any:
    if not isinstance(config, PsiConfig):
        raise ConfigError("config must be a PsiConfig")
    n = session.n_parties
    if n < 2:
        raise ConfigError("PSI needs at least two parties")
    who = check_receivers(receivers, n)
    if protocol not in ("ecdh", "ot"):
        raise ConfigError("protocol must be 'ecdh' or 'ot'")
    if protocol == "ot" and n != 2:
        raise ConfigError("the OT-based PSI is for two parties; use protocol='ecdh'")
    if workers is not None:
        check_int(workers, "workers", lo=1, message="workers must be a positive integer or None")
    if isinstance(identifiers, PreparedSet):
        if identifiers.params != config.identifier_params():
            raise ConfigError("the prepared set was made with other PSI parameters")
        prepared = identifiers
    else:
        prepared = await asyncio.to_thread(prepare_identifiers, identifiers, config)

    sub = session.child("psi")
    name = "kkrt-ot-2p" if protocol == "ot" else "ecdh-ristretto255-2p" if n == 2 else "ecdh-ristretto255-ring"
    digest = config.digest(protocol=name, mode=mode, receivers=who, n_parties=n)
    first_wait = Patience(config.max_wait_seconds or 60.0)
    sizes = await _hello(sub, digest, prepared.size, config.max_set_size, first_wait)
    total = sum(sizes)
    patience = Patience(config.max_wait_seconds or 60.0 + 1e-3 * total)
    if protocol == "ot":
        return await kkrt_psi(sub, prepared, mode=mode, receivers=who, sizes=sizes, patience=patience)

    owned: GroupPool | None = None
    if pool is None:
        if workers is None and available_cores() > 1 and total + prepared.size >= POOL_THRESHOLD:
            owned = GroupPool(available_cores())
        elif workers is not None and workers > 1:
            owned = GroupPool(workers)
    engine = GroupEngine(pool if pool is not None else owned)
    run = two_party_psi if n == 2 else multi_party_psi
    try:
        return await run(
            sub,
            prepared,
            mode=mode,
            receivers=who,
            sizes=sizes,
            chunk=config.chunk_size,
            engine=engine,
            patience=patience,
        )
    finally:
        if owned is not None:
            await asyncio.to_thread(owned.close)


async def _hello(session: Session, digest: bytes, size: int, max_size: int, patience: Patience) -> list[int]:
    """Round 1: every party sends ``{"params": digest, "size": size}`` to every other.

    Returns:
        Every party's set size, by party id.

    Raises:
        ProtocolViolation: a malformed hello, other parameters, or a size over ``max_size``.
    """
    rnd = session.round("hello")
    me = session.party_id
    hello = {"params": digest, "size": size}
    got = await run_all(
        *(rnd.send(p, hello) for p in session.others), *(patience.recv(rnd, p) for p in session.others)
    )
    sizes = [0] * session.n_parties
    sizes[me] = size
    for p, msg in zip(session.others, got[len(session.others) :]):
        if not isinstance(msg, dict) or set(msg) != {"params", "size"}:
            raise ProtocolViolation(f"party {p} sent a malformed PSI hello")
        if msg["params"] != digest:
            raise ProtocolViolation(f"party {p} runs PSI with other parameters (salt, normalisation, mode, receivers or limits)")
        sizes[p] = check_int(
            msg["size"],
            "set size",
            lo=0,
            hi=max_size,
            error=ProtocolViolation,
            message=f"party {p} announced an invalid set size (limit {max_size})",
        )
    return sizes
