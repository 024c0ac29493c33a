"""Secure aggregation with dropout recovery: Bonawitz et al. (CCS 2017) and SecAgg+ (Bell et al.,
CCS 2020).

One party is the aggregator (it holds no data); every other party is a client with a vector in
Z_2^bits. The aggregator learns the sum of the vectors of the clients that survive to the masked
input stage, and nothing else about any one vector; clients may drop at any stage.

Protocol (stages of :mod:`protocols.secagg.client` / :mod:`protocols.secagg.server`, driven by
:mod:`protocols.secagg.protocol`; the graph is complete, or the SecAgg+ Harary graph of degree
``k`` on a public random order):

0. *advertise*: each client sends two X25519 public keys (share encryption, pairwise masks).
   The aggregator fixes ``U1`` and sends each client its live neighbours' keys.
1. *share keys*: each client draws a self-mask seed ``b``, Shamir-shares ``b`` and its mask
   private key ``t``-out-of-``k`` over GF(2^31 - 1) among those neighbours, encrypts each
   holder's shares with AES-256-GCM under an HKDF key from X25519 (associated data: run,
   sender, receiver) and sends them with a SHA-256 commitment to ``b``. The aggregator fixes
   ``U2`` and forwards to each client the ciphertexts addressed to it.
2. *masked input*: each client sends ``y = x + PRG(b) + sum_v +-PRG(k_uv)`` over its partners
   in ``U2`` (AES-CTR PRG; ``k_uv`` from X25519 + HKDF; ``+`` if ``u < v``). The aggregator fixes
   ``U3``, refuses to go on with fewer than ``min_survivors``, and tells each client which of its
   partners are in ``U3``.
3. *unmask*: each client reveals, per partner, the share of ``b`` if the partner is in ``U3``,
   else the share of its mask key — never both. The aggregator checks at least ``t`` consistent
   shares per secret (Lagrange interpolation; surplus shares must lie on the same polynomial),
   checks each rebuilt ``b`` against its commitment and each rebuilt mask key against its public
   key, removes the survivors' self masks and the survivors' pairwise masks with the clients
   that dropped after stage 1, and obtains ``sum_{u in U3} x_u``.
4. *result* (optional, ``release=True``): the aggregator sends the sum to ``U3``.

Threat model: semi-honest (honest-but-curious) aggregator and clients. With the complete graph,
the aggregator together with up to ``t - 1`` clients learns nothing about the honest survivors'
inputs beyond their sum (Bonawitz et al., Theorem 6.3): pairwise masks hide each ``y_u``, and a
client's two secrets are never both revealed. With the SecAgg+ graph the same holds with high
probability over the public random graph when the fraction of corrupted clients is bounded and
``k`` is chosen as in Bell et al. (Theorem 3.6). Clients without the aggregator learn nothing:
they see only ciphertexts and shares addressed to them. What leaks: the sum of the survivors;
who survived each stage (to the aggregator; each client learns which of its partners survived);
the graph (public); sizes. The sum always covers at least ``min_survivors >= max(t, 2)`` clients.

An active aggregator is not defended against: it could substitute the public keys it relays
(they are not signed; Bonawitz's malicious variant signs them with a PKI) and so read every
share and recover single inputs; it could also shrink the survivor set to ``min_survivors`` on
purpose, or return a wrong sum (no integrity). A majority threshold (``t > k / 2``, enforced)
still stops it from obtaining both secrets of an honest client from honest holders alone by
telling them different survivor lists; the consistency-check round of Bonawitz et al. is not
implemented. An active client can add any value in the ring (no input validation) or send bad
shares, which are detected at reconstruction (``AbortError``): a denial of service, not a leak.

Rounds: 4 client -> aggregator messages per client, 3 answers (4 with ``release``).

Bytes per client (payload, ``h`` live neighbours, ``a`` of them survivors, ``m`` the container
size of an element, 4 bytes for ``bits <= 32``; ids travel as int64): sends
``96 + 104 h + m dim + 32 a + 52 (h - a)`` (so ``m dim`` plus about 100 bytes per neighbour);
receives ``72 h + 104 h + 8 a`` (+ ``m dim`` with ``release``). The aggregator sends each client
those ``~184 h`` bytes (+ ``m dim``).

Computation: a client does ``2 h`` X25519 agreements and expands ``h + 1`` masks of ``dim``
elements with AES-CTR; the aggregator expands ``|U3|`` self masks and one pairwise mask per
(survivor, dropped partner) pair, and one X25519 agreement per such pair. No preprocessing.

Errors: see :func:`protocols.secagg.protocol.secure_aggregate`.
"""

from __future__ import annotations

from protocols.secagg.params import SecAggParams, SecAggPlan, harary_neighbors, ring_dtype
from protocols.secagg.protocol import (
    SecAggRun,
    collect,
    open_run,
    run_party,
    secure_aggregate,
    send_each,
)
from protocols.secagg.result import SecAggResult

__all__ = [
    "SecAggParams",
    "SecAggPlan",
    "SecAggResult",
    "SecAggRun",
    "secure_aggregate",
    "open_run",
    "run_party",
    "collect",
    "send_each",
    "harary_neighbors",
    "ring_dtype",
]
