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
   ``U3``, refuses to go on with fewer than ``min_survivors``, and sends every client of ``U3``
   the whole sorted ``U3`` (one list for all; each client derives its partners' statuses from it).
3. *consistency* (Bonawitz et al.'s ConsistencyCheck, over the mesh): each client of ``U3``
   sends ``SHA-256(context || U3)`` directly to every client of ``U3`` that shares a graph
   neighbour with it (everyone, with the complete graph) and waits at most ``stage_timeout`` for
   theirs. It aborts on any digest that differs from its own, and unless, for every partner
   ``v``, at least ``q = max(t, k - max_dropouts)`` of ``v``'s ``k`` holders (itself included)
   sent the same digest; missing digests are otherwise tolerated (dropouts).
4. *unmask*: each client reveals, per partner, the share of ``b`` if the partner is in ``U3``,
   else the share of its mask key — never both. The aggregator checks at least ``t`` consistent
   shares per secret (Lagrange interpolation; surplus shares must lie on the same polynomial),
   checks each rebuilt ``b`` against its commitment and each rebuilt mask key against its public
   key, removes the survivors' self masks and the survivors' pairwise masks with the clients
   that dropped after stage 1, and obtains ``sum_{u in U3} x_u``.
5. *result* (optional, ``release=True``): the aggregator sends the sum to ``U3``.

Threat model: privacy against a semi-honest (honest-but-curious) aggregator and clients, and key
substitution and survivor-list equivocation by an active aggregator detected (below). With the
complete graph, the aggregator together with up to ``t - 1`` clients learns nothing about the
honest survivors' inputs beyond their sum (Bonawitz et al., Theorem 6.3): pairwise masks hide
each ``y_u``, and a client's two secrets are never both revealed. With the SecAgg+ graph the
same holds with high probability over the public random graph when the fraction of corrupted
clients is bounded and ``k`` is chosen as in Bell et al. (Theorem 3.6). Clients without the
aggregator learn nothing: they see only ciphertexts and shares addressed to them, and digests
of ``U3``. What leaks: the sum of the survivors; who survived each stage (to the aggregator;
each client learns ``U3``); the graph (public); sizes. The sum always covers at least
``min_survivors >= max(t, 2)`` clients.

Active aggregator, keys. Keys are not relayed on trust: every client uses only the public keys
its neighbours sent it over their mutually authenticated channels, and checks that the roster
the aggregator relays for the live set carries exactly those keys. Before sharing anything it
raises :class:`~mpc.errors.AbortError` (naming the parties concerned) if a relayed key differs
from the direct one, or if the aggregator lists as live a neighbour whose direct keys did not
arrive within ``stage_timeout`` (it may list a client that never advertised, or made-up keys):
such a listing ends the run, it is never treated as a dropout, so no key of the aggregator's
choosing is ever used. The client then sends the aggregator only a stop notice with the error's
code, and an honest aggregator aborts the whole run on it. So an active aggregator cannot
substitute or inject public keys (nor add clients: the parties and the graph are fixed by the
session): each share is readable only by its intended holder and each pairwise mask is agreed
with the real neighbour.

Active aggregator, survivors. The attack: tell some holders of an honest ``v`` that ``v``
survived (they reveal shares of ``b_v``) and others that it dropped (they reveal shares of its
mask key), and complete both sets to ``t`` with colluding holders' shares, so as to unmask
``y_v``. A digest received directly from a client is as good as its signature on ``U3`` (the
channels are mutually authenticated), so the consistency round is Bonawitz's signed check
without a PKI. Bound: let ``c_v`` be the corrupt clients among ``v``'s ``k`` holders. Two honest
holders of ``v`` that both pass the check with different lists ``A != B`` each hold ``q``
vouchers among ``v``'s holders; an honest voucher sent the digest of its own list, so the honest
vouchers of ``A`` and of ``B`` are disjoint, whence ``2 (q - c_v) <= k - c_v``. So while
``c_v < min(t, 2 q - k)`` every honest holder that reveals anything for ``v`` acts on the same
list and reveals the same kind of share, and the aggregator gets at most ``c_v < t`` shares of
the other secret. Timing does not help it (it can delay a client's list so that its digest
arrives late, but a late digest only fails to vouch; it is never counted), and a list that
differs from an honest peer's is caught whenever that peer's digest arrives in time. The quorum
must exceed ``t`` for this to matter: with ``q = t`` the guaranteed bound, ``c_v < 2 t - k``, is
the one the majority threshold already gives without the check (a split needs ``t - c_v``
honest revealers on each side, the same count as ``q - c_v`` honest vouchers). Hence
``q = max(t, k - max_dropouts)``: never weaker, and always reached when at most
``max_dropouts`` clients fail and none refuses. With the complete graph ``t <= k -
max_dropouts`` is enforced, so ``q = k - max_dropouts`` and the bound is ``c_v < min(t, k - 2
max_dropouts)``: ``max_dropouts = 0`` gives the passive bound ``t - 1`` back in full, each
allowed dropout costs two. With the SecAgg+ graph the bound is per neighbourhood, and ``c_v``
is what Bell et al. bound w.h.p. for a random graph.

What an active aggregator still can do: drop honest clients at any stage and so choose the live
sets ``U1..U4`` and which clients the sum covers (only their number is bounded, by
``min_survivors``; colluding with clients it may thus isolate a single honest input in the
sum); split the holders of ``v`` when ``c_v >= 2 q - k`` (above); return a wrong sum (no
integrity); abort or stall the run (an inconsistent list makes the clients that see it abort).
A client that equivocates (other keys to the aggregator than to a neighbour, or different
digests to different peers) makes those peers abort: a denial of service. An active client
can also add any value in the ring (no input validation) or send bad shares, which are detected
at reconstruction (``AbortError``): a denial of service, not a leak.

Rounds: 4 client -> aggregator messages per client, 3 answers (4 with ``release``); the direct
key messages travel in the first round (one client -> client message per graph neighbour), the
digests in the consistency round (one client -> client message per peer, ``e`` of them: the
clients of ``U3`` two hops away, ``|U3| - 1`` with the complete graph, at most ``2 k`` with
SecAgg+).

Bytes per client (payload, ``k`` graph neighbours, ``h`` of them live, ``a`` of those survivors,
``m`` the container size of an element, 4 bytes for ``bits <= 32``; ids travel as int64): sends
``96 + 64 k + 104 h + m dim + 32 a + 52 (h - a) + 32 e`` (so ``m dim`` plus about 200 bytes per
neighbour), in ``4 + k + e`` messages; receives ``64 h + 32 e`` directly and
``72 h + 104 h + 8 |U3|`` from the aggregator (+ ``m dim`` with ``release``). The aggregator sends
each client those ``~176 h + 8 |U3|`` bytes (+ ``m dim``): the survivor list is O(n) per client
even with SecAgg+, 8 bytes a survivor.

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
