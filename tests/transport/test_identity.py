"""Identity, federation validation and the pinned TLS 1.3 contexts (in-memory TLS, no sockets)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpc.errors import ConfigError, HandshakeFailed
from transport.identity import (
    Federation,
    Identity,
    PeerInfo,
    certificate_fingerprint,
    format_fingerprint,
    generate_identity,
    load_certificate,
    load_identity,
    parse_fingerprint,
    validate_party_name,
)
from transport.tls import authenticate_peer, client_context, server_context, verify_peer


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a TLS handshake between two contexts over memory BIOs; raises the first SSLError."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):  # a TLS 1.3 handshake needs 2-3 flights; bounded loop
        for name, obj in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # The server's verdict on the client certificate reaches the client as an alert.
            try:
                c.read(1)
            except ssl.SSLWantReadError:
                pass
            return c, s
    raise AssertionError("handshake did not finish")


# -- identity files ------------------------------------------------------------------------------


def test_generate_writes_private_key_and_self_signed_certificate(identities: dict[str, Identity]) -> None:
    ident = identities["alpha"]
    assert ident.key_path.stat().st_mode & 0o777 == 0o600
    cert = load_certificate(ident.cert_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alpha"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["alpha"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=5 * 365) <= lifetime <= dt.timedelta(days=5 * 365 + 1)
    assert cert.serial_number > 0
    assert load_certificate(identities["beta"].cert_path).serial_number != cert.serial_number
    der = cert.public_bytes(serialization.Encoding.DER)
    assert ident.fingerprint == hashlib.sha256(der).hexdigest() == certificate_fingerprint(der)
    assert load_identity("alpha", ident.key_path, ident.cert_path) == ident


def test_generate_refuses_to_overwrite_a_key(keydir: Path, identities: dict[str, Identity]) -> None:
    before = identities["alpha"].key_path.read_bytes()
    with pytest.raises(ConfigError, match="already exist"):
        generate_identity("alpha", keydir)
    assert identities["alpha"].key_path.read_bytes() == before


def test_generate_overwrite_replaces_key(tmp_path: Path) -> None:
    first = generate_identity("delta", tmp_path)
    fp = first.fingerprint
    second = generate_identity("delta", tmp_path, overwrite=True)
    assert second.fingerprint != fp
    assert second.key_path.stat().st_mode & 0o777 == 0o600
    second.load()


def test_load_refuses_exposed_key(tmp_path: Path) -> None:
    ident = generate_identity("exposed", tmp_path)
    ident.key_path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ident.load()


def test_load_refuses_mismatched_key_and_wrong_name(tmp_path: Path) -> None:
    a = generate_identity("a", tmp_path)
    b = generate_identity("b", tmp_path)
    with pytest.raises(ConfigError, match="does not match"):
        load_identity("a", a.key_path, b.cert_path)
    with pytest.raises(ConfigError, match="not issued to party"):
        load_identity("b", a.key_path, a.cert_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_identity("a", tmp_path / "missing.key", a.cert_path)
    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(b"not a certificate")
    with pytest.raises(ConfigError, match="not an X.509 certificate"):
        load_certificate(garbage)


def test_load_refuses_expired_certificate(tmp_path: Path) -> None:
    ident = generate_identity("old", tmp_path)
    key = serialization.load_pem_private_key(ident.key_path.read_bytes(), password=None)
    cert = load_certificate(ident.cert_path)
    past = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    expired = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(past)
        .not_valid_after(past + dt.timedelta(days=1))
        .sign(key, algorithm=None)  # type: ignore[arg-type]
    )
    ident.cert_path.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="valid only from 2020-01-01"):
        ident.load()


@pytest.mark.parametrize("name", ["", "a" * 65, "bad name", "sl/ash", "é", "x\n", 7])
def test_invalid_party_names(name: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        validate_party_name(name)
    if isinstance(name, str):
        with pytest.raises(ConfigError):
            generate_identity(name, tmp_path)


def test_valid_party_names() -> None:
    for name in ("a", "hospital-a", "lab_2.eu", "X" * 64):
        assert validate_party_name(name) == name


# -- fingerprints --------------------------------------------------------------------------------


def test_fingerprint_notations_parse_to_one_form(identities: dict[str, Identity]) -> None:
    fp = identities["beta"].fingerprint
    colon = format_fingerprint(fp)
    assert colon.count(":") == 31 and colon.replace(":", "") == fp
    for text in (fp, fp.upper(), colon, colon.upper(), f"sha256:{fp}", f"  {colon}\n"):
        assert parse_fingerprint(text) == fp


@pytest.mark.parametrize(
    "text",
    ["", "abc", "g" * 64, "a" * 63, "a" * 65, ":".join(["ab"] * 31), "ab:" * 31 + "abc", 123, None],
)
def test_malformed_fingerprints(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_fingerprint(text)


# -- PeerInfo and Federation -----------------------------------------------------------------------


def test_peer_info_normalizes_and_validates(identities: dict[str, Identity]) -> None:
    fp = identities["alpha"].fingerprint
    p = PeerInfo("alpha", "127.0.0.1", 7000, format_fingerprint(fp).upper())
    assert p.fingerprint == fp
    with pytest.raises(ConfigError, match="port"):
        PeerInfo("alpha", "127.0.0.1", 0, fp)
    with pytest.raises(ConfigError, match="port"):
        PeerInfo("alpha", "127.0.0.1", 65536, fp)
    with pytest.raises(ConfigError, match="port"):
        PeerInfo("alpha", "127.0.0.1", True, fp)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="host"):
        PeerInfo("alpha", "", 7000, fp)
    with pytest.raises(ConfigError, match="party name"):
        PeerInfo("al pha", "127.0.0.1", 7000, fp)
    beta_pem = identities["beta"].cert_path.read_bytes()
    with pytest.raises(ConfigError, match="does not match the pinned fingerprint"):
        PeerInfo("alpha", "127.0.0.1", 7000, fp, beta_pem)
    with_cert = PeerInfo("alpha", "127.0.0.1", 7000, fp, identities["alpha"].cert_path.read_bytes())
    assert certificate_fingerprint(with_cert.certificate_der()) == fp
    with pytest.raises(ConfigError, match="no certificate"):
        p.certificate_der()


def test_federation_lookup(federation: Federation, identities: dict[str, Identity]) -> None:
    assert federation.names == ("alpha", "beta", "gamma")
    assert len(federation) == 3 and "beta" in federation and "omega" not in federation
    assert federation.by_name("gamma").port == 7002
    assert federation.get("omega") is None
    fp = identities["beta"].fingerprint
    assert federation.by_fingerprint(format_fingerprint(fp).upper()).name == "beta"
    assert [p.name for p in federation.others("beta")] == ["alpha", "gamma"]
    with pytest.raises(ConfigError, match="not a member"):
        federation.by_name("omega")
    with pytest.raises(ConfigError, match="not pinned"):
        federation.by_fingerprint("00" * 32)


def test_federation_rejects_duplicates(federation: Federation) -> None:
    alpha, beta, _ = federation.parties
    twin = PeerInfo("alpha", "127.0.0.2", 7100, beta.fingerprint)
    with pytest.raises(ConfigError, match="duplicate party names"):
        Federation((alpha, beta, twin))
    copy = PeerInfo("copy", "127.0.0.2", 7100, alpha.fingerprint)
    with pytest.raises(ConfigError, match="share a certificate fingerprint"):
        Federation((alpha, beta, copy))
    with pytest.raises(ConfigError):
        Federation(())
    with pytest.raises(ConfigError):
        Federation((alpha, "beta"))  # type: ignore[arg-type]


# -- TLS contexts --------------------------------------------------------------------------------


def test_contexts_are_tls13_mutual_and_pinned(federation: Federation, identities: dict[str, Identity]) -> None:
    for ctx in (server_context(identities["beta"], federation), client_context(identities["alpha"], federation)):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.check_hostname is False
        assert ctx.cert_store_stats()["x509"] == 3  # exactly the pinned members


def test_handshake_identifies_both_sides(federation: Federation, identities: dict[str, Identity]) -> None:
    client, server = _handshake(
        client_context(identities["alpha"], federation), server_context(identities["beta"], federation)
    )
    assert client.version() == "TLSv1.3"
    assert verify_peer(client, federation, "beta").name == "beta"
    assert verify_peer(server, federation, "alpha").name == "alpha"
    assert authenticate_peer(server, federation).name == "alpha"


def test_member_claiming_another_name_is_refused(federation: Federation, identities: dict[str, Identity]) -> None:
    client, server = _handshake(
        client_context(identities["gamma"], federation), server_context(identities["beta"], federation)
    )
    with pytest.raises(HandshakeFailed, match="certificate of 'gamma'"):
        verify_peer(server, federation, "alpha")
    with pytest.raises(HandshakeFailed, match="not a federation member"):
        verify_peer(server, federation, "omega")


def test_certificate_outside_the_federation_fails_tls(
    tmp_path: Path, federation: Federation, identities: dict[str, Identity]
) -> None:
    intruder = generate_identity("alpha", tmp_path)  # the right name, a key nobody pinned
    rogue = Federation(
        (
            PeerInfo.from_certificate("alpha", "127.0.0.1", 7000, intruder.cert_path),
            federation.by_name("beta"),
        )
    )
    with pytest.raises(ssl.SSLError):
        _handshake(client_context(intruder, rogue), server_context(identities["beta"], federation))
    # and the other way round: a server the client has not pinned
    with pytest.raises(ssl.SSLError):
        _handshake(client_context(identities["beta"], federation), server_context(intruder, rogue))


def test_context_refuses_unpinned_identity_or_missing_certificates(
    tmp_path: Path, federation: Federation, identities: dict[str, Identity]
) -> None:
    other = generate_identity("alpha", tmp_path)
    with pytest.raises(ConfigError, match="does not match the fingerprint pinned"):
        server_context(other, federation)
    bare = Federation(tuple(PeerInfo(p.name, p.host, p.port, p.fingerprint) for p in federation))
    with pytest.raises(ConfigError, match="no certificate"):
        client_context(identities["alpha"], bare)
    with pytest.raises(ConfigError, match="not a member"):
        client_context(generate_identity("omega", tmp_path), federation)
