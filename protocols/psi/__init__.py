"""Private set intersection: ECDH over ristretto255 for two and more parties.

Quick start (every party runs this with its own identifiers, SPMD)::

    from protocols.psi import PsiConfig, psi_intersection, psi_cardinality, psi_join

    config = PsiConfig(salt=job_hash)                     # same at every party
    rows = await psi_intersection(session, patient_ids, config)           # my matching rows
    count = await psi_cardinality(session, patient_ids, config, receivers=[0])
    aligned = await psi_join(session, patient_ids, config)  # rows in a common order
    rows = await psi_intersection(session, patient_ids, config, protocol="ot")  # 2 parties, fast

Modules:

- :mod:`protocols.psi.api` — the three entry points; ``n = 2`` runs
  :mod:`~protocols.psi.two_party`, ``n >= 3`` :mod:`~protocols.psi.multi_party`, and
  ``protocol="ot"`` the OT-based :mod:`~protocols.psi.kkrt` (two parties; each module states its
  security model, leakage, rounds and bytes);
- :mod:`protocols.psi.config` — :class:`PsiConfig` (per-job salt, :class:`Normalization`,
  duplicate policy, limits, chunk size);
- :mod:`protocols.psi.identifiers` — normalisation, validation and hashing of identifiers,
  reading an identifier column from CSV;
- :mod:`protocols.psi.group` — ristretto255 (libsodium via rbcl): hash-to-group, scalars, batched
  multiplications and validation in threads or a :class:`GroupPool` of processes;
- :mod:`protocols.psi.streams` — sets as pipelined streams of chunks, patient receives, matching.

Security model in one line: semi-honest, non-colluding parties; the outputs are exact (ECDH: no
false positives or negatives beyond a ~2^-200 collision probability; OT: false positives with
probability at most 2^-40 per job); every party learns all set sizes; see the protocol modules
for exactly what else each party learns.
"""

from __future__ import annotations

from protocols.psi.api import POOL_THRESHOLD, Protocol, psi_cardinality, psi_intersection, psi_join
from protocols.psi.config import MODES, Mode, Normalization, PsiConfig, fresh_salt
from protocols.psi.group import GroupPool
from protocols.psi.identifiers import PreparedSet, normalize, prepare_identifiers, read_identifier_column

__all__ = [
    "MODES",
    "Mode",
    "Normalization",
    "POOL_THRESHOLD",
    "GroupPool",
    "PreparedSet",
    "Protocol",
    "PsiConfig",
    "fresh_salt",
    "normalize",
    "prepare_identifiers",
    "psi_cardinality",
    "psi_intersection",
    "psi_join",
    "read_identifier_column",
]
