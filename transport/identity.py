"""Party identity: long-term keys, self-signed certificates, fingerprints and the federation.

Each party owns an Ed25519 key and a self-signed X.509 certificate (CN and SAN DNS = the party's
name). Parties do not share a certificate authority: a federation pins every member's name,
address and certificate fingerprint (SHA-256 over the certificate's DER encoding), and carries
the members' certificates, which become the TLS trust store (see :mod:`transport.tls`).

Threat model: the federation (names, addresses, fingerprints) is distributed out of band and is
trusted; the network is not. Whoever holds a member's private key *is* that member, so keys are
written owner-readable only (0600) and loading refuses a key that group or others can read.
Fingerprints identify certificates, not names: a certificate is authenticated only by matching
the fingerprint pinned for the party it claims to be.

Parsing of federation files (TOML) lives in ``parties``; this module holds the dataclasses and
their validation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpc.checks import check_int
from mpc.errors import ConfigError

__all__ = [
    "PARTY_NAME_PATTERN",
    "DEFAULT_VALIDITY_DAYS",
    "Identity",
    "PeerInfo",
    "Federation",
    "validate_party_name",
    "generate_identity",
    "load_identity",
    "load_certificate",
    "certificate_fingerprint",
    "parse_fingerprint",
    "format_fingerprint",
]

PARTY_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Allowed party names (also used as certificate CN and SAN DNS name)."""

DEFAULT_VALIDITY_DAYS = 5 * 365
"""Validity of a generated certificate."""

_FINGERPRINT_HEX = re.compile(r"[0-9a-f]{64}")


def validate_party_name(name: object) -> str:
    """Check a party name.

    Returns:
        The name, unchanged.

    Raises:
        ConfigError: ``name`` is not a string matching ``[A-Za-z0-9._-]{1,64}``.
    """
    if not isinstance(name, str) or PARTY_NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(f"invalid party name {name!r}: expected [A-Za-z0-9._-]{{1,64}}")
    return name


def parse_fingerprint(text: object) -> str:
    """Normalize a SHA-256 certificate fingerprint.

    Accepts 64 hex digits in either case, with or without ``:`` separators between bytes, and an
    optional ``sha256:`` prefix.

    Returns:
        The fingerprint as 64 lowercase hex digits, no separators.

    Raises:
        ConfigError: ``text`` is not such a fingerprint.
    """
    if not isinstance(text, str):
        raise ConfigError(f"fingerprint must be a string, got {type(text).__name__}")
    value = text.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:") :]
    if ":" in value:
        parts = value.split(":")
        if len(parts) != 32 or any(len(p) != 2 for p in parts):
            raise ConfigError(f"invalid fingerprint {text!r}: expected 32 colon-separated bytes")
        value = "".join(parts)
    if _FINGERPRINT_HEX.fullmatch(value) is None:
        raise ConfigError(f"invalid fingerprint {text!r}: expected 64 hex digits (SHA-256)")
    return value


def format_fingerprint(fingerprint: str) -> str:
    """Show a fingerprint as colon-separated lowercase byte pairs (``ab:cd:...``)."""
    fp = parse_fingerprint(fingerprint)
    return ":".join(fp[i : i + 2] for i in range(0, len(fp), 2))


def certificate_fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 fingerprint of a certificate (an object, or its DER encoding).

    Returns:
        64 lowercase hex digits.
    """
    der = cert.public_bytes(serialization.Encoding.DER) if isinstance(cert, x509.Certificate) else cert
    return hashlib.sha256(der).hexdigest()


def load_certificate(data_or_path: bytes | str | os.PathLike[str]) -> x509.Certificate:
    """Load one X.509 certificate from PEM or DER bytes, or from a file holding either.

    Raises:
        ConfigError: the file is missing or does not hold a certificate.
    """
    if isinstance(data_or_path, bytes):
        data = data_or_path
        where = "certificate data"
    else:
        where = str(data_or_path)
        try:
            data = Path(data_or_path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read certificate {where}: {exc.strerror}") from None
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{where} is not an X.509 certificate") from None


def _verify_self_signed(cert: x509.Certificate, where: str) -> None:
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(f"{where} is not a valid self-signed certificate") from None


@dataclass(frozen=True)
class Identity:
    """This party's own long-term identity: its name and the paths of its key and certificate.

    Use :func:`generate_identity` to make one and :meth:`load` to check an existing one.

    Attributes:
        name: the party's name in the federation.
        key_path: PEM file of the private key (mode 0600).
        cert_path: PEM file of the self-signed certificate.
    """

    name: str
    key_path: Path
    cert_path: Path

    def __post_init__(self) -> None:
        validate_party_name(self.name)
        object.__setattr__(self, "key_path", Path(self.key_path))
        object.__setattr__(self, "cert_path", Path(self.cert_path))

    def certificate(self) -> x509.Certificate:
        """The certificate, loaded from :attr:`cert_path`."""
        return load_certificate(self.cert_path)

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the certificate (64 lowercase hex digits), read from the file."""
        return certificate_fingerprint(self.certificate())

    def load(self) -> Identity:
        """Check the key and certificate files: readable, consistent and well-protected.

        Returns:
            ``self``, so that ``Identity(...).load()`` can be used inline.

        Raises:
            ConfigError: a file is missing or malformed, the key is readable by group or others,
                the key does not match the certificate, the certificate is not validly
                self-signed, expired or not yet valid, or its common name is not :attr:`name`.
        """
        try:
            st = self.key_path.stat()
            key_pem = self.key_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read key {self.key_path}: {exc.strerror}") from None
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"key {self.key_path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); run chmod 600"
            )
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{self.key_path} is not an unencrypted PEM private key") from None
        cert = self.certificate()
        _verify_self_signed(cert, str(self.cert_path))
        own = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, own) != cert.public_key().public_bytes(
            serialization.Encoding.DER, own
        ):
            raise ConfigError(f"key {self.key_path} does not match certificate {self.cert_path}")
        now = dt.datetime.now(dt.timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ConfigError(
                f"certificate {self.cert_path} is valid only from {cert.not_valid_before_utc:%Y-%m-%d} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d}; generate a new identity"
            )
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or cns[0].value != self.name:
            raise ConfigError(f"certificate {self.cert_path} is not issued to party {self.name!r}")
        return self


def load_identity(
    name: str, key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str]
) -> Identity:
    """Load and check an existing identity (see :meth:`Identity.load`).

    Raises:
        ConfigError: the files are missing, malformed, inconsistent or the key is exposed.
    """
    return Identity(name, Path(key_path), Path(cert_path)).load()


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never widening an existing file's mode) and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_identity(
    name: str,
    directory: str | os.PathLike[str],
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    overwrite: bool = False,
) -> Identity:
    """Generate a party's Ed25519 key and self-signed certificate.

    Writes ``<name>.key`` (PKCS#8 PEM, mode 0600) and ``<name>.crt`` (PEM) into ``directory``.
    The certificate has CN = SAN DNS = ``name``, a random 159-bit serial, and extended key usages
    for both TLS server and client authentication.

    Args:
        name: the party's name.
        directory: where to write the files (created if missing, mode 0700).
        validity_days: certificate lifetime from now.
        overwrite: replace existing files; by default an existing key is never overwritten.

    Returns:
        The new identity.

    Raises:
        ConfigError: invalid name or validity, or the files exist and ``overwrite`` is false.
    """
    validate_party_name(name)
    check_int(
        validity_days, "validity_days", lo=1, message=f"validity_days must be a positive integer, got {validity_days!r}"
    )
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = folder / f"{name}.key"
    cert_path = folder / f"{name}.crt"
    if not overwrite and (key_path.exists() or cert_path.exists()):
        raise ConfigError(f"identity files for {name!r} already exist in {folder}")

    key = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(159) | 1)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, algorithm=None)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if overwrite:
        key_path.unlink(missing_ok=True)
    _write_private(key_path, key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Identity(name, key_path, cert_path)


@dataclass(frozen=True)
class PeerInfo:
    """One federation member as pinned in the federation file.

    Attributes:
        name: the member's party name.
        host: host name or IP address it listens on.
        port: TCP port it listens on (1..65535).
        fingerprint: SHA-256 fingerprint of its certificate (normalized to 64 lowercase hex
            digits; colon-separated or uppercase input is accepted).
        certificate: the member's certificate (PEM or DER bytes), needed in the TLS trust store;
            if given, its fingerprint must equal :attr:`fingerprint`.
    """

    name: str
    host: str
    port: int
    fingerprint: str
    certificate: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        validate_party_name(self.name)
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            raise ConfigError(f"party {self.name!r}: invalid host {self.host!r}")
        check_int(self.port, "port", lo=1, hi=65535, message=f"party {self.name!r}: invalid port {self.port!r}")
        object.__setattr__(self, "fingerprint", parse_fingerprint(self.fingerprint))
        if self.certificate is not None:
            if not isinstance(self.certificate, bytes):
                raise ConfigError(f"party {self.name!r}: certificate must be PEM or DER bytes")
            cert = load_certificate(self.certificate)
            if certificate_fingerprint(cert) != self.fingerprint:
                raise ConfigError(
                    f"party {self.name!r}: certificate does not match the pinned fingerprint"
                )
            _verify_self_signed(cert, f"certificate of party {self.name!r}")

    @classmethod
    def from_certificate(
        cls, name: str, host: str, port: int, certificate: bytes | str | os.PathLike[str]
    ) -> PeerInfo:
        """A member entry whose fingerprint is computed from its certificate (bytes or path)."""
        cert = load_certificate(certificate)
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(name, host, port, certificate_fingerprint(der), der)

    def certificate_der(self) -> bytes:
        """The member's certificate in DER form.

        Raises:
            ConfigError: the entry carries no certificate.
        """
        if self.certificate is None:
            raise ConfigError(f"party {self.name!r}: no certificate in the federation")
        return load_certificate(self.certificate).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Federation:
    """The members of a federation: unique names, unique fingerprints.

    Attributes:
        parties: the members, in the federation file's order.

    Raises:
        ConfigError: on construction, if there are no members, a member is not a
            :class:`PeerInfo`, or names or fingerprints repeat.
    """

    parties: tuple[PeerInfo, ...]

    def __post_init__(self) -> None:
        parties = tuple(self.parties)
        object.__setattr__(self, "parties", parties)
        if not parties:
            raise ConfigError("a federation needs at least one party")
        for p in parties:
            if not isinstance(p, PeerInfo):
                raise ConfigError(f"federation member must be a PeerInfo, got {type(p).__name__}")
        names = [p.name for p in parties]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"duplicate party names in federation: {', '.join(dup)}")
        fps = [p.fingerprint for p in parties]
        if len(set(fps)) != len(fps):
            dup = sorted({p.name for p in parties if fps.count(p.fingerprint) > 1})
            raise ConfigError(f"parties share a certificate fingerprint: {', '.join(dup)}")

    @property
    def names(self) -> tuple[str, ...]:
        """Member names, in order."""
        return tuple(p.name for p in self.parties)

    def __iter__(self) -> Iterator[PeerInfo]:
        return iter(self.parties)

    def __len__(self) -> int:
        return len(self.parties)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.parties)

    def by_name(self, name: str) -> PeerInfo:
        """The member called ``name``.

        Raises:
            ConfigError: no such member.
        """
        member = self.get(name)
        if member is None:
            raise ConfigError(f"party {name!r} is not a member of the federation")
        return member

    def get(self, name: str) -> PeerInfo | None:
        """The member called ``name``, or ``None`` if there is none."""
        for p in self.parties:
            if p.name == name:
                return p
        return None

    def by_fingerprint(self, fingerprint: str) -> PeerInfo:
        """The member whose certificate has ``fingerprint`` (any accepted notation).

        Raises:
            ConfigError: the fingerprint is malformed or pinned for no member.
        """
        fp = parse_fingerprint(fingerprint)
        for p in self.parties:
            if p.fingerprint == fp:
                return p
        raise ConfigError("certificate fingerprint is not pinned for any federation member")

    def others(self, name: str) -> tuple[PeerInfo, ...]:
        """Every member except ``name`` (which must be a member)."""
        self.by_name(name)
        return tuple(p for p in self.parties if p.name != name)
