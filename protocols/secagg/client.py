"""The client side of SecAgg: one state dataclass per stage and a pure function per step.

Each ``client_*`` function takes the state of the previous stage and the aggregator's message,
checks the message, and returns the new state and the client's next message. No I/O here; the
async driver is :mod:`protocols.secagg.protocol`.

Stages (Bonawitz et al. 2017, section 4; SecAgg+ restricts every set to the neighbours):

0. :func:`client_setup` -> :class:`ClientSetup`: two X25519 key pairs, one to encrypt shares
   (``c``), one to agree pairwise masks (``s``); send both public keys to the aggregator and to
   each neighbour directly.
1. :func:`client_share_keys` -> :class:`ClientSharedKeys`: given the roster (the live
   neighbours' public keys as relayed by the aggregator) and the keys the neighbours sent
   directly, abort unless they agree (:func:`check_direct_keys`); then draw the self-mask seed
   ``b``, Shamir-share ``b`` and the mask private key among the roster with threshold ``t``,
   encrypt each holder's two shares to it under its direct key (AES-GCM, key from X25519 +
   HKDF, associated data binding run, sender and receiver), send the ciphertexts and a
   commitment to ``b``.
2. :func:`client_mask` -> :class:`ClientMasked`: given the ciphertexts of the partners that
   shared keys, decrypt and keep their shares, and send the masked input
   ``y = x + PRG(b) + sum_v +-PRG(k_uv)`` over those partners.
3. :func:`client_survivors` -> :class:`ClientSurvivors`: given the survivor set ``U3`` (the
   same list for everyone), check it against our partners and return the digest of ``U3`` we
   send directly to every client of ``U3`` within two hops of us in the graph.
   :func:`client_check_digests` -> :class:`ClientAgreed`: given the digests those clients sent
   us, abort on any that differs, and unless, for every partner, at least ``plan.quorum`` of
   its holders (us included) vouch for our ``U3`` (the consistency check; see
   :mod:`protocols.secagg` for why this stops a server equivocating about who survived).
   :func:`client_unmask`: reveal, per partner, the share of its self-mask seed (it survived)
   or of its mask key (it dropped), never both; only an agreed view can be unmasked.
4. :func:`client_result`: the released sum, if the run releases it to the clients.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mpc.errors import AbortError, ConfigError, ProtocolViolation
from mpc.prg import PRG
from protocols.secagg import crypto, messages
from protocols.secagg.masking import apply_masks, pairwise_seed, pairwise_sign
from protocols.secagg.messages import B_LIMBS, CT_BYTES, SK_LIMBS
from protocols.secagg.params import SecAggPlan
from protocols.secagg.result import SecAggResult
from protocols.secagg.shamir import share_secret

__all__ = [
    "ClientSetup",
    "ClientSharedKeys",
    "ClientMasked",
    "ClientSurvivors",
    "ClientAgreed",
    "check_input",
    "client_setup",
    "client_share_keys",
    "roster_members",
    "check_direct_keys",
    "client_mask",
    "client_survivors",
    "client_check_digests",
    "client_unmask",
    "client_result",
    "share_associated_data",
    "survivors_digest",
    "two_hop",
]


def share_associated_data(context: bytes, sender: int, receiver: int) -> bytes:
    """AEAD associated data of the share message from ``sender`` to ``receiver`` in a run."""
    return b"secagg-share\x00" + context + crypto.party_bytes(sender, receiver)


def _share_key(shared: bytes, context: bytes, sender: int, receiver: int) -> bytes:
    """The one-direction AES key for share messages from ``sender`` to ``receiver``."""
    return crypto.derive(
        shared, "secagg-share-key", context + crypto.party_bytes(sender, receiver), 32
    )


def check_input(x: Any, plan: SecAggPlan) -> np.ndarray:
    """A client's input as a ring vector of the plan's container dtype (a copy).

    Raises:
        ConfigError: not an integer array of shape ``(dim,)`` with values in [0, 2^bits).
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu" or arr.shape != (plan.dim,):
        raise ConfigError(f"input must be an integer array of shape ({plan.dim},)")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ConfigError("input values must be non-negative ring elements")
    if plan.bits < 64 and arr.size and int(arr.max()) >> plan.bits:
        raise ConfigError(f"input values must be below 2^{plan.bits}")
    return arr.astype(plan.dtype, copy=True)


@dataclass(frozen=True)
class ClientSetup:
    """After stage 0: this client's key pairs.

    Attributes:
        plan: the run's validated parameters.
        party_id: this client.
        context: bytes naming the run (session id and protocol path), bound into every key.
        neighbors: this client's neighbours in the (public) graph.
        enc_sk: X25519 private key for share encryption.
        mask_sk: X25519 private key for pairwise masks (Shamir-shared in stage 1).
        graph: the whole public graph (the consistency check counts the partners' holders).
    """

    plan: SecAggPlan
    party_id: int
    context: bytes
    neighbors: frozenset[int]
    enc_sk: bytes
    mask_sk: bytes
    graph: Mapping[int, frozenset[int]]


@dataclass(frozen=True)
class ClientSharedKeys:
    """After stage 1: the roster's keys, our self-mask seed and the share keys.

    Attributes:
        setup: stage 0 state.
        mask_pks: roster peer -> its mask public key.
        recv_keys: roster peer -> AES key of share messages from it to us.
        self_seed: ``b``, the 16-byte self-mask seed.
    """

    setup: ClientSetup
    mask_pks: dict[int, bytes]
    recv_keys: dict[int, bytes]
    self_seed: bytes


@dataclass(frozen=True)
class ClientMasked:
    """After stage 2: the partners and the shares they gave us.

    Attributes:
        shared: stage 1 state.
        partners: the neighbours that shared keys (ascending); our pairwise masks used them.
        sk_shares: uint32 ``(len(partners), SK_LIMBS)``: our shares of their mask keys.
        b_shares: uint32 ``(len(partners), B_LIMBS)``: our shares of their self-mask seeds.
    """

    shared: ClientSharedKeys
    partners: tuple[int, ...]
    sk_shares: np.ndarray
    b_shares: np.ndarray

    @property
    def plan(self) -> SecAggPlan:
        """The run's parameters."""
        return self.shared.setup.plan


def client_setup(
    plan: SecAggPlan,
    party_id: int,
    context: bytes,
    graph: Mapping[int, frozenset[int]],
    prg: PRG,
) -> tuple[ClientSetup, dict[str, Any]]:
    """Stage 0: make the key pairs; the message advertises both public keys.

    The same message goes to the aggregator and, over the authenticated channel, directly to
    every neighbour (see :func:`client_share_keys` for the cross-check)."""
    if party_id not in plan.clients:
        raise ConfigError(f"party {party_id} is not a client of this run")
    enc_sk, enc_pk = crypto.keypair(prg)
    mask_sk, mask_pk = crypto.keypair(prg)
    state = ClientSetup(plan, party_id, context, graph[party_id], enc_sk, mask_sk, graph)
    return state, {"c": enc_pk, "s": mask_pk}


def roster_members(state: ClientSetup, roster: Any) -> tuple[int, ...]:
    """The clients the aggregator lists as live neighbours (whose direct keys we then expect).

    Raises:
        ProtocolViolation: the roster is malformed or names a non-neighbour.
        AbortError: the aggregator stopped the run or dropped this client.
    """
    messages.check_stop(roster, "share-keys")
    server = state.plan.server
    ids = messages.ids_array(messages.field(roster, "ids", server), server, "roster ids")
    holders = tuple(int(v) for v in ids)
    if not set(holders) <= state.neighbors:
        raise ProtocolViolation("the roster names clients that are not our neighbours")
    return holders


def check_direct_keys(
    state: ClientSetup, roster: Any, direct: Mapping[int, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-check the keys the aggregator relays against those the neighbours sent directly.

    Args:
        state: stage 0 state.
        roster: the aggregator's roster message.
        direct: neighbour -> the advertisement it sent us over our authenticated channel (only
            those that arrived).

    Returns:
        ``(enc_pks, mask_pks)``: uint8 ``(h, 32)`` rows in roster order, from the direct
        messages (equal to the relayed ones).

    Raises:
        ProtocolViolation: a malformed roster or direct advertisement.
        AbortError: a listed neighbour's direct keys did not arrive (the aggregator lists a
            client that never advertised to us, or a key it made up), or differ from the keys
            the aggregator relays (a substituted key, or a client equivocating).
    """
    holders = roster_members(state, roster)
    server, h = state.plan.server, len(holders)
    relayed_enc = messages.uint8_rows(messages.field(roster, "c", server), h, 32, server, "keys")
    relayed_mask = messages.uint8_rows(messages.field(roster, "s", server), h, 32, server, "keys")
    missing = [v for v in holders if v not in direct]
    if missing:
        raise AbortError(
            f"the aggregator lists parties {missing[:8]} as live but their keys did not reach "
            "us directly"
        )
    enc_pks = np.empty((h, 32), dtype=np.uint8)
    mask_pks = np.empty((h, 32), dtype=np.uint8)
    for row, v in enumerate(holders):  # a loop over the roster (one message per neighbour)
        for rows, key in ((enc_pks, "c"), (mask_pks, "s")):
            pk = messages.bytes_field(messages.field(direct[v], key, v), 32, v, "a public key")
            rows[row] = np.frombuffer(pk, dtype=np.uint8)
    bad = np.flatnonzero(
        np.any(enc_pks != relayed_enc, axis=1) | np.any(mask_pks != relayed_mask, axis=1)
    )
    if bad.size:
        raise AbortError(
            f"the aggregator relayed public keys of parties {[holders[i] for i in bad[:8]]} "
            "that differ from the keys they sent us directly"
        )
    return enc_pks, mask_pks


def client_share_keys(
    state: ClientSetup, roster: Any, direct: Mapping[int, Any], prg: PRG
) -> tuple[ClientSharedKeys, dict[str, Any]]:
    """Stage 1: share ``b`` and the mask key among the roster, encrypted to each holder.

    Only keys the neighbours sent directly are used, after :func:`check_direct_keys`.

    Raises:
        ProtocolViolation: the roster or a direct advertisement is malformed, or the roster
            names a non-neighbour.
        AbortError: the relayed keys and the direct keys disagree or a listed neighbour's
            direct keys are missing, the roster is smaller than the threshold, or the run was
            stopped.
    """
    plan, me = state.plan, state.party_id
    enc_pks, mask_pks = check_direct_keys(state, roster, direct)
    holders = list(roster_members(state, roster))
    ids = np.array(holders, dtype=np.int64)
    h = ids.size
    if h < plan.threshold:
        raise AbortError(f"only {h} live neighbours, threshold {plan.threshold}")
    self_seed = prg.bytes(crypto.SEED_BYTES)
    xs = ids + 1
    sk_shares = share_secret(state.mask_sk, xs, plan.threshold, prg)
    b_shares = share_secret(self_seed, xs, plan.threshold, prg)
    plaintexts = np.concatenate([sk_shares, b_shares], axis=1).astype("<u4")
    ct = np.empty((h, CT_BYTES), dtype=np.uint8)
    recv_keys: dict[int, bytes] = {}
    enc_key = crypto.private_key(state.enc_sk)
    # A loop over the roster (one key agreement and one AEAD message per holder).
    for row, v in enumerate(holders):
        shared = crypto.agree(enc_key, enc_pks[row].tobytes())
        recv_keys[v] = _share_key(shared, state.context, v, me)
        sealed = crypto.seal(
            _share_key(shared, state.context, me, v),
            plaintexts[row].tobytes(),
            share_associated_data(state.context, me, v),
            prg,
        )
        ct[row] = np.frombuffer(sealed, dtype=np.uint8)
    commitment = crypto.commit(self_seed, "secagg-self-seed", state.context + crypto.party_bytes(me))
    new = ClientSharedKeys(
        setup=state,
        mask_pks={v: mask_pks[row].tobytes() for row, v in enumerate(holders)},
        recv_keys=recv_keys,
        self_seed=self_seed,
    )
    return new, {"to": ids, "ct": ct, "commit": commitment}


def client_mask(state: ClientSharedKeys, forwarded: Any, x: np.ndarray) -> tuple[ClientMasked, np.ndarray]:
    """Stage 2: keep the partners' decrypted shares; return the masked input.

    Args:
        state: stage 1 state.
        forwarded: the aggregator's message with the partners' ciphertexts.
        x: this client's input as returned by :func:`check_input`.

    Raises:
        ProtocolViolation: malformed message, unknown sender, or a ciphertext that fails
            authentication (tampered, or bound to another sender, receiver or run).
        AbortError: fewer partners than the threshold (or the run was stopped).
    """
    messages.check_stop(forwarded, "masked-input")
    setup = state.setup
    plan, me, server = setup.plan, setup.party_id, setup.plan.server
    ids = messages.ids_array(messages.field(forwarded, "from", server), server, "senders")
    cts = messages.uint8_rows(messages.field(forwarded, "ct", server), ids.size, CT_BYTES, server, "shares")
    partners = tuple(int(u) for u in ids)
    if not set(partners) <= set(state.recv_keys):
        raise ProtocolViolation("forwarded shares from a client outside our roster")
    if len(partners) < plan.threshold:
        raise AbortError(f"only {len(partners)} partners, threshold {plan.threshold}")
    plain = np.empty((len(partners), messages.SHARE_PLAINTEXT_BYTES), dtype=np.uint8)
    for row, u in enumerate(partners):  # one AEAD message per partner
        pt = crypto.open_sealed(
            state.recv_keys[u], cts[row].tobytes(), share_associated_data(setup.context, u, me)
        )
        if len(pt) != messages.SHARE_PLAINTEXT_BYTES:
            raise ProtocolViolation(f"share message from party {u} has the wrong length")
        plain[row] = np.frombuffer(pt, dtype=np.uint8)
    limbs = plain.view("<u4").astype(np.uint32)
    share_rows = messages.share_rows(limbs, len(partners), SK_LIMBS + B_LIMBS, server, "shares")
    y = np.array(x, dtype=plan.dtype, copy=True)
    plus = [state.self_seed]
    minus: list[bytes] = []
    mask_key = crypto.private_key(setup.mask_sk)
    for v in partners:  # one key agreement and one mask expansion per partner
        seed = pairwise_seed(mask_key, state.mask_pks[v], me, v, setup.context)
        (plus if pairwise_sign(me, v) > 0 else minus).append(seed)
    plan.reduce(apply_masks(y, plus, minus, plan))
    new = ClientMasked(
        shared=state,
        partners=partners,
        sk_shares=np.ascontiguousarray(share_rows[:, :SK_LIMBS]),
        b_shares=np.ascontiguousarray(share_rows[:, SK_LIMBS:]),
    )
    return new, y


def survivors_digest(context: bytes, u3: np.ndarray) -> bytes:
    """SHA-256 of the run and the sorted survivor ids: what clients compare in the consistency
    round (equal digests mean equal ``U3``, barring a SHA-256 collision)."""
    ids = np.ascontiguousarray(u3, dtype="<i8").tobytes()
    return hashlib.sha256(b"secagg-survivors\x00" + context + b"\x00" + ids).digest()


def two_hop(graph: Mapping[int, frozenset[int]], party: int) -> frozenset[int]:
    """Clients sharing a neighbour with ``party`` (``party`` excluded): those that may need its
    digest, and whose digests it may need, in the consistency round. Symmetric."""
    out: set[int] = set()
    for v in graph[party]:  # a loop over neighbours (k of them)
        out |= graph[v]
    out.discard(party)
    return frozenset(out)


@dataclass(frozen=True)
class ClientSurvivors:
    """After the survivors message: this client's view of ``U3``, not yet agreed.

    Attributes:
        masked: stage 2 state.
        u3: the survivor set the aggregator sent us (ascending).
        alive: per partner (in ``masked.partners`` order), whether it is in ``u3``.
        digest: :func:`survivors_digest` of ``u3``.
        peers: the clients of ``u3`` we exchange digests with (two hops from us, ascending).
    """

    masked: ClientMasked
    u3: tuple[int, ...]
    alive: np.ndarray
    digest: bytes
    peers: tuple[int, ...]


@dataclass(frozen=True)
class ClientAgreed:
    """After the consistency round: a survivor view enough holders vouched for.

    Only :func:`client_check_digests` makes one, and only a :class:`ClientAgreed` can be
    unmasked, so no share is revealed on an unchecked view.

    Attributes:
        view: the checked view.
        vouchers: the clients whose digests equalled ours (ascending).
    """

    view: ClientSurvivors
    vouchers: tuple[int, ...]


def client_survivors(state: ClientMasked, survivors: Any) -> tuple[ClientSurvivors, bytes]:
    """Stage 3a: read the survivor set ``U3``; return our view and the digest to send.

    Our partners' statuses are derived from ``U3``, so the list we compare with the other
    clients is exactly what decides which share we reveal for each partner.

    Raises:
        ProtocolViolation: ``U3`` is malformed, names a non-client, leaves us out, or names a
            neighbour whose shares we never received (it cannot have masked with us).
        AbortError: fewer survivors than the plan allows, or the run was stopped.
    """
    messages.check_stop(survivors, "survivors")
    setup = state.shared.setup
    plan, server, me = setup.plan, setup.plan.server, setup.party_id
    u3 = messages.ids_array(messages.field(survivors, "u3", server), server, "survivors")
    members = set(int(u) for u in u3)
    if not members <= set(plan.clients):
        raise ProtocolViolation("the survivors name a party that is not a client")
    if me not in members:
        raise ProtocolViolation("the survivors sent to us leave us out")
    if len(members) < plan.min_survivors or len(members) < plan.threshold:
        raise AbortError(f"only {len(members)} survivors, {plan.min_survivors} required")
    strangers = sorted((members & setup.neighbors) - set(state.partners))
    if strangers:
        raise ProtocolViolation(
            f"the survivors name neighbours {strangers[:8]} whose shares we never received"
        )
    alive = np.array([u in members for u in state.partners], dtype=bool)
    peers = tuple(sorted(two_hop(setup.graph, me) & members))
    digest = survivors_digest(setup.context, u3)
    return ClientSurvivors(state, tuple(sorted(members)), alive, digest, peers), digest


def client_check_digests(state: ClientSurvivors, digests: Mapping[int, Any]) -> ClientAgreed:
    """Stage 3b: check the digests our peers sent us directly; agree on ``U3`` or abort.

    Args:
        state: our view.
        digests: peer -> the payload it sent us in the consistency round (only those that
            arrived before the deadline; missing ones are tolerated).

    Raises:
        ProtocolViolation: a digest is not 32 bytes, or comes from a client outside our peers.
        AbortError: a peer's digest differs from ours (the aggregator told us different
            survivor lists, or the peer equivocates), or some partner has fewer than
            ``plan.quorum`` holders vouching for our view (counting us).
    """
    setup = state.masked.shared.setup
    plan, me = setup.plan, setup.party_id
    peers = set(state.peers)
    if not set(digests) <= peers:
        raise ProtocolViolation("digests from clients outside our consistency peers")
    differ = []
    vouchers = {me}
    for w in sorted(digests):  # a loop over peers (one 32-byte message each)
        if messages.bytes_field(digests[w], 32, w, "a survivor digest") == state.digest:
            vouchers.add(w)
        else:
            differ.append(w)
    if differ:
        raise AbortError(
            f"parties {differ[:8]} hold another survivor list than the aggregator sent us"
        )
    short = []
    for v in state.masked.partners:  # a loop over partners: count the holders vouching
        if len(setup.graph[v] & vouchers) < plan.quorum:
            short.append(v)
    if short:
        raise AbortError(
            f"fewer than {plan.quorum} holders of parties {short[:8]} confirmed our survivor "
            "list: refusing to reveal their shares"
        )
    return ClientAgreed(state, tuple(sorted(vouchers - {me})))


def client_unmask(state: ClientAgreed) -> dict[str, Any]:
    """Stage 3c: reveal, per partner, the share of its seed ``b`` (alive) or mask key (dropped).

    The statuses come from the agreed ``U3``; each partner gets exactly one of its two shares.
    """
    view = state.view
    masked = view.masked
    partners = np.array(masked.partners, dtype=np.int64)
    return {
        "b_from": partners[view.alive],
        "b": masked.b_shares[view.alive],
        "sk_from": partners[~view.alive],
        "sk": masked.sk_shares[~view.alive],
    }


def client_result(state: ClientMasked, payload: Any) -> SecAggResult:
    """Stage 4: the sum released by the aggregator.

    Raises:
        ProtocolViolation: malformed message.
        AbortError: the run was stopped.
    """
    messages.check_stop(payload, "result")
    plan, server = state.plan, state.plan.server
    total = messages.vector(messages.field(payload, "sum", server), plan.dtype, plan.dim, plan.bits, server)
    survivors = messages.ids_array(messages.field(payload, "survivors", server), server, "survivors")
    if not set(int(u) for u in survivors) <= set(plan.clients):
        raise ProtocolViolation("the survivors name a party that is not a client")
    return SecAggResult(total=np.array(total), survivors=tuple(int(u) for u in survivors))
