"""Parameters of a PSI job: identifier normalisation, the per-job salt, limits, chunking.

Every party of a job must use the same :class:`PsiConfig` (except the purely local
``max_wait_seconds``); the protocols check this in their first round by comparing
:meth:`PsiConfig.digest` values and raise :class:`~mpc.errors.ProtocolViolation` on a mismatch,
since parties that hash identifiers differently would silently find a wrong (empty)
intersection.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from mpc.checks import check_int
from mpc.errors import ConfigError

__all__ = [
    "Mode",
    "MODES",
    "Duplicates",
    "Normalization",
    "PsiConfig",
    "fresh_salt",
    "check_receivers",
]

Mode = Literal["intersection", "cardinality", "join"]
MODES: tuple[str, ...] = ("intersection", "cardinality", "join")
Duplicates = Literal["error", "keep-first"]
UnicodeForm = Literal["NFC", "NFKC", "none"]

_VERSION = "mpc-psi-v1"
MIN_SALT_BYTES = 16
MAX_SALT_BYTES = 1024
MAX_CHUNK = 1 << 20


def fresh_salt() -> bytes:
    """32 bytes from the OS CSPRNG, for a job whose parties have no agreed job hash to use."""
    return os.urandom(32)


@dataclass(frozen=True)
class Normalization:
    """How identifiers are normalised before hashing (chosen per job, identical at every party).

    Applied in this order: Unicode normalisation, case folding (followed by the Unicode
    normalisation again, since folding can denormalise), whitespace collapsing, trimming.
    Whitespace means Unicode whitespace (``str.isspace``).

    Attributes:
        unicode_form: ``"NFC"`` (default: canonical composition, so "e" + combining acute
            equals "é"), ``"NFKC"`` (also folds compatibility forms such as full-width
            digits), or ``"none"``.
        casefold: apply ``str.casefold`` (full Unicode case folding: "Straße" equals
            "STRASSE").
        collapse_whitespace: replace each run of whitespace inside an identifier by one space.
        strip: remove leading and trailing whitespace.
    """

    unicode_form: UnicodeForm = "NFC"
    casefold: bool = False
    collapse_whitespace: bool = True
    strip: bool = True

    def __post_init__(self) -> None:
        if self.unicode_form not in ("NFC", "NFKC", "none"):
            raise ConfigError("unicode_form must be 'NFC', 'NFKC' or 'none'")
        for name in ("casefold", "collapse_whitespace", "strip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"normalization.{name} must be a bool")

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for job manifests and the parameter digest)."""
        return {
            "unicode_form": self.unicode_form,
            "casefold": self.casefold,
            "collapse_whitespace": self.collapse_whitespace,
            "strip": self.strip,
        }


@dataclass(frozen=True)
class PsiConfig:
    """Parameters of one PSI job.

    Attributes:
        salt: the per-job salt (16 to 1024 bytes), identical at every party: the job layer
            passes its agreed job hash. It is hashed together with every identifier, so the
            group elements of two jobs are unrelated and results cannot be linked across jobs
            (the per-party secret scalars are fresh per run as well).
        normalization: identifier normalisation, see :class:`Normalization`.
        duplicates: what to do when two rows of one party's input have the same normalised
            identifier: ``"error"`` (default) raises :class:`~mpc.errors.ConfigError` before any
            message; ``"keep-first"`` keeps the first such row (results refer to it) and counts
            the others in :attr:`~protocols.psi.identifiers.PreparedSet.duplicates`.
        max_set_size: largest set a party may bring (checked locally before any message, and
            on every peer's announced size).
        max_identifier_bytes: largest normalised identifier in UTF-8 bytes.
        chunk_size: group elements per message; sets travel as a stream of chunks so that no
            party stays silent for long and work is pipelined between parties.
        max_wait_seconds: local, not agreed: how long one receive may wait for a message
            while the peers are legitimately busy (it is retried after each channel timeout
            until this much time has passed; a peer that is gone fails it at once). ``None``:
            60 s plus 1 ms per element of all parties' sets (the first round: 60 s).
    """

    salt: bytes
    normalization: Normalization = field(default_factory=Normalization)
    duplicates: Duplicates = "error"
    max_set_size: int = 10_000_000
    max_identifier_bytes: int = 256
    chunk_size: int = 1 << 14
    max_wait_seconds: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.salt, (bytes, bytearray)):
            raise ConfigError("salt must be bytes")
        if not MIN_SALT_BYTES <= len(self.salt) <= MAX_SALT_BYTES:
            raise ConfigError(f"salt must have {MIN_SALT_BYTES} to {MAX_SALT_BYTES} bytes")
        object.__setattr__(self, "salt", bytes(self.salt))
        if not isinstance(self.normalization, Normalization):
            raise ConfigError("normalization must be a Normalization")
        if self.duplicates not in ("error", "keep-first"):
            raise ConfigError("duplicates must be 'error' or 'keep-first'")
        check_int(self.max_set_size, "max_set_size", lo=0, hi=1 << 40)
        check_int(self.max_identifier_bytes, "max_identifier_bytes", lo=1, hi=1 << 20)
        check_int(self.chunk_size, "chunk_size", lo=1, hi=MAX_CHUNK)
        if self.max_wait_seconds is not None:
            if isinstance(self.max_wait_seconds, bool) or not isinstance(self.max_wait_seconds, (int, float)):
                raise ConfigError("max_wait_seconds must be a number")
            if not self.max_wait_seconds > 0:
                raise ConfigError("max_wait_seconds must be positive")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PsiConfig:
        """Build a config from plain values (e.g. a job manifest or a harness input).

        ``normalization`` may be a mapping of :class:`Normalization` fields.

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        if not isinstance(values, Mapping):
            raise ConfigError("PSI parameters must be a mapping")
        known = {"salt", "normalization", "duplicates", "max_set_size", "max_identifier_bytes", "chunk_size", "max_wait_seconds"}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown PSI parameters {sorted(unknown)}")
        if "salt" not in values:
            raise ConfigError("PSI parameters need a salt")
        kwargs = dict(values)
        norm = kwargs.get("normalization")
        if isinstance(norm, Mapping):
            try:
                kwargs["normalization"] = Normalization(**norm)
            except TypeError as exc:
                raise ConfigError(f"invalid normalization: {exc}") from None
        return cls(**kwargs)

    def identifier_params(self) -> bytes:
        """Digest of what determines an identifier's hash (salt, normalisation, limits)."""
        spec = {
            "version": _VERSION,
            "salt": self.salt.hex(),
            "normalization": self.normalization.as_dict(),
            "duplicates": self.duplicates,
            "max_set_size": self.max_set_size,
            "max_identifier_bytes": self.max_identifier_bytes,
        }
        return _digest(b"identifiers", spec)

    def digest(self, *, protocol: str, mode: str, receivers: Sequence[int], n_parties: int) -> bytes:
        """The 32-byte digest every party compares in the first round.

        It covers everything the parties must agree on: protocol, mode, receivers, number of
        parties, salt, normalisation, duplicate policy, limits and chunk size.
        """
        spec = {
            "version": _VERSION,
            "protocol": protocol,
            "mode": mode,
            "receivers": sorted(int(r) for r in receivers),
            "n_parties": int(n_parties),
            "identifiers": self.identifier_params().hex(),
            "chunk_size": self.chunk_size,
        }
        return _digest(b"job", spec)


def check_receivers(receivers: Sequence[int] | None, n_parties: int) -> tuple[int, ...]:
    """Sorted distinct receiver ids; every party when ``None``.

    Raises:
        ConfigError: empty, duplicated, non-integer or out-of-range ids.
    """
    if receivers is None:
        return tuple(range(n_parties))
    ids = tuple(receivers)
    if not ids:
        raise ConfigError("PSI needs at least one receiver")
    ids = tuple(check_int(r, "receivers", message="receivers must be party ids") for r in ids)
    if len(set(ids)) != len(ids) or not all(0 <= r < n_parties for r in ids):
        raise ConfigError(f"receivers must be distinct ids in [0, {n_parties})")
    return tuple(sorted(ids))


def _digest(kind: bytes, spec: Mapping[str, Any]) -> bytes:
    body = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(b"mpc-psi-params\x00" + kind + b"\x00" + body).digest()
