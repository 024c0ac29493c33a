"""Secure aggregation with dropout recovery: Bonawitz et al. (CCS 2017) and SecAgg+ (Bell et al.,
CCS 2020).

One party is the aggregator (it holds no data); every other party is a client with a vector in
Z_2^bits. The aggregator learns the sum of the vectors of the clients that survive to the masked
input stage, and nothing else about any one vector; clients may drop at any stage.

Protocol (stages of :mod:`protocols.secagg.client` / :mod:`protocols.secagg.server`, driven by
:mod:`protocols.secagg.protocol`; the graph is complete, or the SecAgg+ Harary graph of degree
``k`` on a public random order):

0. *advertise*: each client sends two X25519 public keys (share encryption, pairwise masks)
   directly to each of its graph neighbours over their mutually authenticated channel, then to
   the aggregator (same round, one message per peer). The aggregator fixes ``U1`` and sends each
   client its live neighbours' keys; the client uses only the keys its neighbours sent it
   directly and aborts unless the relayed ones are identical (see the threat model).
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

Threat model: privacy against a semi-honest (honest-but-curious) aggregator and clients, and key
substitution by an active aggregator detected (below). With the complete graph,
the aggregator together with up to ``t - 1`` clients learns nothing about the honest survivors'
inputs beyond their sum (Bonawitz et al., Theorem 6.3): pairwise masks hide each ``y_u``, and a
client's two secrets are never both revealed. With the SecAgg+ graph the same holds with high
probability over the public random graph when the fraction of corrupted clients is bounded and
``k`` is chosen as in Bell et al. (Theorem 3.6). Clients without the aggregator learn nothing:
they see only ciphertexts and shares addressed to them. What leaks: the sum of the survivors;
who survived each stage (to the aggregator; each client learns which of its partners survived);
the graph (public); sizes. The sum always covers at least ``min_survivors >= max(t, 2)`` clients.

Active aggregator. Keys are not relayed on trust: every client uses only the public keys its
neighbours sent it over their mutually authenticated channels, and checks that the roster the
aggregator relays for the live set carries exactly those keys. Before sharing anything it raises
:class:`~mpc.errors.AbortError` (naming the parties concerned) if a relayed key differs from the
direct one, or if the aggregator lists as live a neighbour whose direct keys did not arrive
within ``stage_timeout`` (it may list a client that never advertised, or made-up keys): such a
listing ends the run, it is never treated as a dropout, so no key of the aggregator's choosing is
ever used. The client then sends the aggregator only a stop notice with the error's code, and an
honest aggregator aborts the whole run on it. So an active aggregator cannot substitute or
inject public keys (nor add clients: the parties and the graph are fixed by the session): each
share is readable only by its intended holder and each pairwise mask is agreed with the real
neighbour. It still can: drop honest clients at any stage and so choose the live sets ``U1..U4``
and which clients the sum covers (only their number is bounded, by ``min_survivors``; colluding
with clients it may thus isolate a single honest input in the sum); tell different holders
different survivor lists in stage 3 (the consistency-check round of Bonawitz et al. is not
implemented; a majority threshold, ``t > k / 2``, enforced, still stops it from obtaining both
secrets of an honest client from honest holders alone, but shares of colluding holders can
make up the difference, which Bonawitz's signed consistency check would prevent); return a wrong
sum (no integrity); abort or stall the run. A client that equivocates (other keys to the
aggregator than to a neighbour) makes that neighbour abort: a denial of service. An active client
can also add any value in the ring (no input validation) or send bad shares, which are detected
at reconstruction (``AbortError``): a denial of service, not a leak.

Rounds: 4 client -> aggregator messages per client, 3 answers (4 with ``release``); the direct
key messages travel in the first round (one client -> client message per graph neighbour).

Bytes per client (payload, ``k`` graph neighbours, ``h`` of them live, ``a`` of those survivors,
``m`` the container size of an element, 4 bytes for ``bits <= 32``; ids travel as int64): sends
``96 + 64 k + 104 h + m dim + 32 a + 52 (h - a)`` (so ``m dim`` plus about 170 bytes per
neighbour), in ``4 + k`` messages; receives ``64 h`` directly and ``72 h + 104 h + 8 a`` from the
aggregator (+ ``m dim`` with ``release``). The aggregator sends each client those ``~184 h``
bytes (+ ``m dim``).

Computation: a client compares ``h`` relayed key pairs with the direct ones, does ``2 h`` X25519
agreements and expands ``h + 1`` masks of ``dim``
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
