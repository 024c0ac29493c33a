"""TLS 1.3 contexts with mutual authentication pinned to the federation's certificates.

The mesh's connections use :func:`mesh_context` (pyOpenSSL, run by :mod:`transport.tlsconn`);
:func:`server_context` and :func:`client_context` are the same policy for Python's :mod:`ssl`
(tools and tests that dial a mesh with the standard library).

Both sides present their own certificate and require the peer's. The trust store holds exactly
the federation members' (self-signed) certificates, so the TLS handshake already fails for a
certificate that no member owns. Host names are not checked: identity is established by pinning,
after the handshake, with :func:`verify_peer`, which requires the peer's certificate to be the one
pinned for the party it claims to be (client side: the party it dialled; server side: the party
named in the request and, again, in the link hello).

Threat model: an active network attacker, and federation members who try to impersonate each
other. Both are stopped by the pin check; a compromised member key is out of scope (whoever holds
it is that member). Failures raise :class:`~mpc.errors.HandshakeFailed` whose message is for the
local log only.
"""

from __future__ import annotations

import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL
from OpenSSL.crypto import X509

from mpc.errors import ConfigError, HandshakeFailed
from transport.identity import Federation, Identity, PeerInfo, certificate_fingerprint

__all__ = ["mesh_context", "server_context", "client_context", "peer_certificate", "verify_peer", "authenticate_peer"]


def _trust_store(federation: Federation) -> str:
    pems = []
    for member in federation:
        der = member.certificate_der()  # raises ConfigError if missing
        pems.append(ssl.DER_cert_to_PEM_cert(der))
    return "".join(pems)


def _check_own(identity: Identity, federation: Federation) -> None:
    own = federation.by_name(identity.name)
    identity.load()
    if identity.fingerprint != own.fingerprint:
        raise ConfigError(
            f"certificate {identity.cert_path} does not match the fingerprint pinned for "
            f"{identity.name!r} in the federation"
        )


def mesh_context(identity: Identity, federation: Federation) -> SSL.Context:
    """The mesh's TLS policy as a pyOpenSSL context (:mod:`transport.tlsconn`), for both roles.

    The same policy as :func:`server_context` and :func:`client_context`: TLS 1.3 only, this
    party's certificate presented, the peer's required (the handshake fails without one) and
    verified against a trust store of exactly the federation's pinned certificates, no session
    tickets; the pin of the party is checked after the handshake (:func:`verify_peer`).

    Raises:
        ConfigError: as for :func:`server_context`.
    """
    _check_own(identity, federation)
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)  # TLS 1.3 tickets would need the cache
    # Memory BIOs never block a write: without partial writes one SSL_write encrypts a whole
    # frame (many records) in one call, not one call per 16 KB record.
    ctx.clear_mode(Binding.lib.SSL_MODE_ENABLE_PARTIAL_WRITE)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
    try:
        ctx.use_certificate_chain_file(str(identity.cert_path))
        ctx.use_privatekey_file(str(identity.key_path))
        ctx.check_privatekey()
        store = ctx.get_cert_store()
        assert store is not None  # a fresh context has one
        for member in federation:
            store.add_cert(X509.from_cryptography(x509.load_der_x509_certificate(member.certificate_der())))
    except SSL.Error as exc:
        raise ConfigError(f"cannot set up TLS for {identity.name!r}: {exc}") from None
    return ctx


def _context(purpose: int, identity: Identity, federation: Federation) -> ssl.SSLContext:
    _check_own(identity, federation)
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # identity is by fingerprint pinning, see verify_peer
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_TICKET  # no session resumption: every connection authenticates fully
    try:
        ctx.load_cert_chain(str(identity.cert_path), str(identity.key_path))
        ctx.load_verify_locations(cadata=_trust_store(federation))
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot set up TLS for {identity.name!r}: {exc.reason}") from None
    return ctx


def server_context(identity: Identity, federation: Federation) -> ssl.SSLContext:
    """Context for accepting connections: TLS 1.3 only, client certificate required.

    Args:
        identity: this party's key and certificate.
        federation: the pinned members (their certificates form the trust store).

    Raises:
        ConfigError: the identity's files are invalid, its certificate is not the one pinned for
            it, or a member's certificate is missing from the federation.
    """
    return _context(ssl.PROTOCOL_TLS_SERVER, identity, federation)


def client_context(identity: Identity, federation: Federation) -> ssl.SSLContext:
    """Context for dialling peers: TLS 1.3 only, server certificate required, no host name check.

    Raises:
        ConfigError: as for :func:`server_context`.
    """
    return _context(ssl.PROTOCOL_TLS_CLIENT, identity, federation)


def peer_certificate(ssl_object: Any) -> bytes:
    """The DER certificate the peer presented in a completed handshake.

    ``ssl_object`` is an :class:`ssl.SSLObject` or :class:`ssl.SSLSocket`, or a
    :class:`transport.tlsconn.PeerView` (the same ``version`` and ``getpeercert`` methods).

    Raises:
        HandshakeFailed: there is no TLS session or the peer sent no certificate.
    """
    if ssl_object is None:
        raise HandshakeFailed("connection is not TLS")
    if ssl_object.version() != "TLSv1.3":
        raise HandshakeFailed(f"negotiated {ssl_object.version()}, not TLSv1.3")
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise HandshakeFailed("peer presented no certificate")
    return der


def authenticate_peer(ssl_object: Any, federation: Federation) -> PeerInfo:
    """The federation member whose pinned certificate the peer presented.

    Raises:
        HandshakeFailed: no certificate, or one that no member's pin matches.
    """
    fp = certificate_fingerprint(peer_certificate(ssl_object))
    try:
        return federation.by_fingerprint(fp)
    except ConfigError:
        raise HandshakeFailed(f"certificate {fp[:16]}... is not a federation member's") from None


def verify_peer(ssl_object: Any, federation: Federation, claimed: str) -> PeerInfo:
    """Check that the peer's certificate is the one pinned for ``claimed``.

    Args:
        ssl_object: the connection's TLS object after the handshake.
        federation: the pinned members.
        claimed: the party the peer must be (the one dialled, or the one it names).

    Returns:
        The member entry of ``claimed``.

    Raises:
        HandshakeFailed: ``claimed`` is not a member, the certificate is not a member's, or it is
            another member's than ``claimed``.
    """
    if claimed not in federation:
        raise HandshakeFailed(f"peer claims to be {claimed!r}, which is not a federation member")
    owner = authenticate_peer(ssl_object, federation)
    if owner.name != claimed:
        raise HandshakeFailed(f"peer claims to be {claimed!r} but presents the certificate of {owner.name!r}")
    return owner

