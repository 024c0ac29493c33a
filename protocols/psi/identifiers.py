"""Identifiers: reading, normalising, validating, de-duplicating and hashing a party's set.

Everything here is local and happens before the first message of a job, so every bad input is a
:class:`~mpc.errors.ConfigError` raised before anything leaves the party. Error messages name row
numbers, never identifier values (they may be patient identifiers).

Hashing. Identifier ``x`` (after normalisation, UTF-8 encoded) becomes the 64-byte digest
``SHA-512(DST || len(salt) as 2 bytes big-endian || salt || x)`` with
``DST = b"mpc-psi/ristretto255/sha512/v1\\x00"``; :mod:`protocols.psi.group` maps it to a
ristretto255 element with the RFC 9496 (section 4.3.4) element derivation
(``crypto_core_ristretto255_from_hash``). The salt is fixed-length-prefixed and the identifier
comes last, so the encoding is unambiguous.

Decisions (documented behaviour, see :class:`~protocols.psi.config.PsiConfig`):

- duplicates (equal after normalisation): ``ConfigError`` by default, or the first row kept
  with ``duplicates="keep-first"`` (the count of dropped rows is in :attr:`PreparedSet.duplicates`);
- an empty set is allowed (the intersection is then empty; its size still leaks, as always);
- an identifier that is empty after normalisation, not text, not valid UTF-8 (bytes input),
  not encodable as UTF-8 (lone surrogates), or longer than ``max_identifier_bytes`` after
  normalisation (or more than four times that before it, to bound work) is a ``ConfigError``;
- a set with more than ``max_set_size`` rows is a ``ConfigError`` raised before reading it.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mpc.errors import ConfigError
from protocols.psi.config import Normalization, PsiConfig
from protocols.psi.rowsets import first_occurrences

__all__ = [
    "DIGEST_BYTES",
    "DST",
    "PreparedSet",
    "normalize",
    "prepare_identifiers",
    "read_identifier_column",
]

DIGEST_BYTES = 64
DST = b"mpc-psi/ristretto255/sha512/v1\x00"
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class PreparedSet:
    """A party's identifiers, normalised, checked, de-duplicated and hashed.

    Attributes:
        digests: ``(m, 64)`` uint8, the salted SHA-512 digest of each kept identifier (secret:
            digests of guessable identifiers can be recomputed by anyone who knows the salt).
        rows: ``(m,)`` int64, the input row of each digest, ascending.
        n_input: number of input rows.
        duplicates: number of rows dropped as duplicates (``keep-first`` only; else 0).
        params: :meth:`PsiConfig.identifier_params` of the config used, so a set prepared under
            another salt or normalisation is refused.
    """

    digests: np.ndarray
    rows: np.ndarray
    n_input: int
    duplicates: int
    params: bytes

    @property
    def size(self) -> int:
        """Number of distinct identifiers (the size the peers learn)."""
        return int(self.rows.shape[0])


def normalize(text: str, normalization: Normalization) -> str:
    """Apply ``normalization`` to one identifier (see :class:`Normalization` for the order)."""
    return _normalizer(normalization)(text)


def _normalizer(normalization: Normalization) -> Callable[[str], str]:
    """A function applying ``normalization``, specialised to its options (it runs per row)."""
    form = normalization.unicode_form
    fold = normalization.casefold
    collapse = normalization.collapse_whitespace
    strip = normalization.strip

    def apply(text: str) -> str:
        ascii_only = text.isascii()  # ASCII is invariant under NFC and NFKC
        if form != "none" and not ascii_only:
            text = unicodedata.normalize(form, text)
        if fold:
            text = text.casefold()
            if form != "none" and not ascii_only:
                text = unicodedata.normalize(form, text)
        if collapse and strip:
            return " ".join(text.split())  # str.split() splits on the same whitespace as \s
        if collapse:
            text = _WHITESPACE.sub(" ", text)
        return text.strip() if strip else text

    return apply


def prepare_identifiers(identifiers: Sequence[str | bytes], config: PsiConfig) -> PreparedSet:
    """Normalise, check, de-duplicate and hash one party's identifiers.

    Args:
        identifiers: the party's identifiers, one per row: ``str``, or ``bytes`` holding UTF-8.
        config: the job's parameters (salt, normalisation, limits, duplicate policy).

    Returns:
        The :class:`PreparedSet`; row ``i`` of the input keeps index ``i`` in every result.

    Raises:
        ConfigError: see the module docstring (too many rows, bad or over-long identifiers,
            duplicates under ``duplicates="error"``).
    """
    if isinstance(identifiers, (str, bytes, bytearray)) or not hasattr(identifiers, "__len__"):
        raise ConfigError("identifiers must be a sequence of str or bytes, one per row")
    n = len(identifiers)
    if n > config.max_set_size:
        raise ConfigError(f"set of {n} identifiers exceeds max_set_size={config.max_set_size}")
    limit = config.max_identifier_bytes
    # One Python step per identifier in the comprehensions below: Unicode normalisation and
    # hashing of str objects have no vectorised form; the checks and everything after are numpy.
    texts = [item if type(item) is str else _as_text(item, row, limit) for row, item in enumerate(identifiers)]
    if len(texts) != n:
        raise ConfigError("identifiers changed length while being read")
    _first_bad(np.fromiter(map(len, texts), dtype=np.int64, count=n) > 4 * limit, "is over-long")
    normalized = list(map(_normalizer(config.normalization), texts))
    try:
        encoded = [text.encode("utf-8") for text in normalized]
    except UnicodeEncodeError:
        for row, text in enumerate(normalized):
            _encode(text, row, limit)  # raises, naming the row
        raise
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    _first_bad(lengths == 0, "is empty after normalisation")
    _first_bad(lengths > limit, f"has more than max_identifier_bytes={limit} bytes after normalisation")
    salt = config.salt
    prefix = DST + len(salt).to_bytes(2, "big") + salt
    sha512 = hashlib.sha512
    parts = [sha512(prefix + data).digest() for data in encoded]
    digests = np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(n, DIGEST_BYTES)
    first = first_occurrences(digests)
    duplicates = n - first.shape[0]
    if duplicates and config.duplicates == "error":
        seen = np.zeros(n, dtype=bool)
        seen[first] = True
        row = int(np.flatnonzero(~seen)[0])
        raise ConfigError(
            f"{duplicates} duplicate identifier(s) after normalisation (first repeat at row {row}); "
            "remove them or use duplicates='keep-first'"
        )
    rows = first
    return PreparedSet(
        digests=np.ascontiguousarray(digests[rows]),
        rows=rows,
        n_input=n,
        duplicates=int(duplicates),
        params=config.identifier_params(),
    )


def read_identifier_column(
    source: str | os.PathLike[str] | Iterable[str],
    column: str | int,
    *,
    delimiter: str = ",",
    header: bool = True,
    max_rows: int | None = None,
) -> list[str]:
    """Read one column of a CSV file (UTF-8, optional BOM) as identifiers.

    Fully blank lines are skipped; every other line is one row, so the returned list's index is
    the data row number (header excluded) among non-blank lines.

    Args:
        source: a path, or an iterable of text lines (e.g. an open text file or ``io.StringIO``).
        column: the column's header name (needs ``header=True``) or its 0-based index.
        delimiter: the field delimiter.
        header: whether the first non-blank line is a header.
        max_rows: refuse files with more data rows than this (e.g. ``config.max_set_size``),
            before reading further.

    Returns:
        The column's values, as text (not yet normalised).

    Raises:
        ConfigError: unreadable file, not UTF-8, malformed CSV (including a field over the csv
            module's field size limit), unknown column, a row without that column, or more than
            ``max_rows`` rows.
    """
    if isinstance(column, bool) or not isinstance(column, (str, int)):
        raise ConfigError("column must be a header name or a 0-based index")
    if isinstance(column, str) and not header:
        raise ConfigError("a column name needs header=True")
    if isinstance(column, int) and column < 0:
        raise ConfigError("column index must be non-negative")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with open(path, encoding="utf-8-sig", errors="strict", newline="") as fh:
                return _read_column(fh, str(path), column, delimiter, header, max_rows)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _read_column(source, "CSV input", column, delimiter, header, max_rows)


# -- helpers ---------------------------------------------------------------------------------


def _as_text(item: Any, row: int, limit: int) -> str:
    if isinstance(item, str):
        if len(item) > 4 * limit:
            raise ConfigError(f"identifier at row {row} is over-long ({len(item)} characters)")
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        raw = bytes(item)
        if len(raw) > 4 * limit:
            raise ConfigError(f"identifier at row {row} is over-long ({len(raw)} bytes)")
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise ConfigError(f"identifier at row {row} is not valid UTF-8") from None
    raise ConfigError(f"identifier at row {row} is a {type(item).__name__}, not str or bytes")


def _first_bad(bad: np.ndarray, what: str) -> None:
    if bad.any():
        raise ConfigError(f"identifier at row {int(np.argmax(bad))} {what}")


def _encode(text: str, row: int, limit: int) -> bytes:
    if not text:
        raise ConfigError(f"identifier at row {row} is empty after normalisation")
    try:
        data = text.encode("utf-8", errors="strict")
    except UnicodeEncodeError:
        raise ConfigError(f"identifier at row {row} cannot be encoded as UTF-8") from None
    if len(data) > limit:
        raise ConfigError(
            f"identifier at row {row} has {len(data)} bytes after normalisation, over max_identifier_bytes={limit}"
        )
    return data


def _read_column(
    lines: Iterable[str], where: str, column: str | int, delimiter: str, header: bool, max_rows: int | None
) -> list[str]:
    try:
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
    except (TypeError, csv.Error) as exc:
        raise ConfigError(f"invalid CSV dialect: {exc}") from None
    out: list[str] = []
    index = column if isinstance(column, int) else -1
    need_header = header
    try:
        for record in reader:
            if not record:
                continue
            if need_header:
                need_header = False
                if isinstance(column, str):
                    names = [name.strip() for name in record]
                    if column not in names:
                        raise ConfigError(f"{where}: no column named {column!r} in the header")
                    index = names.index(column)
                continue
            if index >= len(record):
                raise ConfigError(f"{where}: line {reader.line_num} has no column {column!r}")
            if max_rows is not None and len(out) >= max_rows:
                raise ConfigError(f"{where}: more than {max_rows} rows")
            out.append(record[index])
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not valid UTF-8 (after line {reader.line_num})") from None
    except csv.Error as exc:
        raise ConfigError(f"{where}: malformed CSV at line {reader.line_num}: {exc}") from None
    if need_header and isinstance(column, str):
        raise ConfigError(f"{where}: no header line")
    return out
