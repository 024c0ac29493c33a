"""PSI identifiers and parameters: normalisation, validation, duplicates, hashing, CSV input."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from mpc.errors import ConfigError
from protocols.psi import Normalization, PsiConfig, normalize, prepare_identifiers, read_identifier_column
from protocols.psi.identifiers import DST

SALT = b"job-0123456789abcdef"


def cfg(**kwargs: object) -> PsiConfig:
    return PsiConfig(salt=SALT, **kwargs)  # type: ignore[arg-type]


# -- normalisation ----------------------------------------------------------------------------


def test_default_normalization_nfc_and_whitespace() -> None:
    norm = Normalization()
    decomposed = "Jose\u0301  Garci\u0301a "  # combining acute accents, double and trailing spaces
    assert normalize(decomposed, norm) == "Jos\u00e9 Garc\u00eda"
    assert normalize("\t a\u00a0\u2003b \n", norm) == "a b"  # Unicode whitespace collapses
    assert normalize("Alice", norm) == "Alice"  # case kept unless asked


def test_casefold_and_options_off() -> None:
    assert normalize("STRASSE", Normalization(casefold=True)) == normalize("Stra\u00dfe", Normalization(casefold=True))
    raw = Normalization(unicode_form="none", collapse_whitespace=False, strip=False)
    assert normalize(" e\u0301  x ", raw) == " e\u0301  x "
    assert normalize(" a  b ", Normalization(collapse_whitespace=False)) == "a  b"
    assert normalize(" a  b ", Normalization(strip=False)) == " a b "
    assert normalize("\uff11\uff12", Normalization(unicode_form="NFKC")) == "12"  # full-width digits


def test_normalization_validates() -> None:
    with pytest.raises(ConfigError):
        Normalization(unicode_form="NFD")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Normalization(casefold="yes")  # type: ignore[arg-type]


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"salt": b"short"},
        {"salt": "a-string-salt-of-enough-length"},
        {"salt": SALT, "duplicates": "drop"},
        {"salt": SALT, "max_set_size": -1},
        {"salt": SALT, "max_identifier_bytes": 0},
        {"salt": SALT, "chunk_size": 0},
        {"salt": SALT, "chunk_size": True},
        {"salt": SALT, "max_wait_seconds": 0},
        {"salt": SALT, "normalization": {"casefold": True}},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PsiConfig(**kwargs)  # type: ignore[arg-type]


def test_config_from_mapping_and_digest() -> None:
    c = PsiConfig.from_mapping({"salt": SALT, "normalization": {"casefold": True}, "chunk_size": 7})
    assert c.normalization.casefold and c.chunk_size == 7
    for bad in ({"salt": SALT, "nope": 1}, {"chunk_size": 7}, {"salt": SALT, "normalization": {"x": 1}}, [1]):
        with pytest.raises(ConfigError):
            PsiConfig.from_mapping(bad)  # type: ignore[arg-type]
    base = cfg().digest(protocol="p", mode="intersection", receivers=[0, 1], n_parties=2)
    assert len(base) == 32
    assert base == cfg(max_wait_seconds=5).digest(protocol="p", mode="intersection", receivers=[1, 0], n_parties=2)
    others = [
        cfg().digest(protocol="p", mode="join", receivers=[0, 1], n_parties=2),
        cfg().digest(protocol="p", mode="intersection", receivers=[0], n_parties=2),
        cfg().digest(protocol="p", mode="intersection", receivers=[0, 1], n_parties=3),
        PsiConfig(salt=SALT + b"x").digest(protocol="p", mode="intersection", receivers=[0, 1], n_parties=2),
        cfg(normalization=Normalization(casefold=True)).digest(protocol="p", mode="intersection", receivers=[0, 1], n_parties=2),
        cfg(chunk_size=5).digest(protocol="p", mode="intersection", receivers=[0, 1], n_parties=2),
    ]
    assert len({base, *others}) == len(others) + 1


# -- prepare ----------------------------------------------------------------------------------


def test_digest_is_salted_sha512_of_normalised_utf8() -> None:
    prepared = prepare_identifiers(["  Zo\u0065\u0308 ", b"b"], cfg())
    expected = hashlib.sha512(DST + len(SALT).to_bytes(2, "big") + SALT + "Zo\u00eb".encode()).digest()
    assert prepared.digests.shape == (2, 64) and prepared.digests.dtype == np.uint8
    assert prepared.digests[0].tobytes() == expected
    np.testing.assert_array_equal(prepared.rows, [0, 1])
    other = prepare_identifiers(["Zo\u00eb"], PsiConfig(salt=b"another-job-salt-xyz"))
    assert other.digests[0].tobytes() != expected  # per-job salt: unlinkable across jobs


def test_duplicates_error_by_default_and_keep_first() -> None:
    ids = ["a", "b", " a", "c", "b "]
    with pytest.raises(ConfigError, match="duplicate .*row 2"):
        prepare_identifiers(ids, cfg())
    kept = prepare_identifiers(ids, cfg(duplicates="keep-first"))
    np.testing.assert_array_equal(kept.rows, [0, 1, 3])
    assert kept.duplicates == 2 and kept.n_input == 5 and kept.size == 3
    # Duplicates only after case folding are duplicates when the job folds case.
    assert prepare_identifiers(["Ann", "ann"], cfg()).size == 2
    with pytest.raises(ConfigError, match="duplicate"):
        prepare_identifiers(["Ann", "ann"], cfg(normalization=Normalization(casefold=True)))


def test_empty_set_is_allowed() -> None:
    prepared = prepare_identifiers([], cfg())
    assert prepared.size == 0 and prepared.digests.shape == (0, 64)


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([b"ok", b"\xff\xfe"], "row 1 is not valid UTF-8"),
        (["ok", "bad\ud800"], "row 1 cannot be encoded"),
        (["ok", "   "], "row 1 is empty"),
        (["x" * 65], "row 0 has more than max_identifier_bytes=64"),
        (["\u00e9" * 33], "row 0 has more than"),
        (["x" * 1000], "row 0 is over-long"),
        ([b"x" * 1000], "row 0 is over-long"),
        (["ok", 12], "row 1 is a int"),
        ("abc", "sequence"),
        (b"abc", "sequence"),
    ],
)
def test_bad_identifiers_raise_config_error(ids: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        prepare_identifiers(ids, cfg(max_identifier_bytes=64))  # type: ignore[arg-type]


def test_error_messages_never_contain_identifiers() -> None:
    secret = "patient-4711-" + "z" * 80
    with pytest.raises(ConfigError) as info:
        prepare_identifiers([secret], cfg(max_identifier_bytes=64))
    assert "4711" not in str(info.value)


def test_size_limit_checked_before_reading() -> None:
    class Huge:
        def __len__(self) -> int:
            return 10**12

        def __iter__(self) -> object:
            raise AssertionError("must not be read")

    with pytest.raises(ConfigError, match="max_set_size"):
        prepare_identifiers(Huge(), cfg())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_set_size=2"):
        prepare_identifiers(["a", "b", "c"], cfg(max_set_size=2))


# -- CSV --------------------------------------------------------------------------------------


def test_csv_by_name_and_index(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    path.write_bytes("\ufeffid, name\n1,Zo\u00eb\n\n2,\"Smith, J\"\n".encode())
    assert read_identifier_column(path, "name") == ["Zo\u00eb", "Smith, J"]
    assert read_identifier_column(path, 0) == ["1", "2"]
    assert read_identifier_column(str(path), 0, header=False) == ["id", "1", "2"]
    assert read_identifier_column(io.StringIO("a;b\nx;y\n"), "b", delimiter=";") == ["y"]


def test_csv_bad_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"id\nok\nM\xfcller\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        read_identifier_column(bad, "id")
    with pytest.raises(ConfigError, match="no column named"):
        read_identifier_column(io.StringIO("a,b\n1,2\n"), "c")
    with pytest.raises(ConfigError, match="line 3 has no column"):
        read_identifier_column(io.StringIO("a,b\n1,2\n3\n"), "b")
    with pytest.raises(ConfigError, match="more than 2 rows"):
        read_identifier_column(io.StringIO("a\n1\n2\n3\n"), "a", max_rows=2)
    with pytest.raises(ConfigError, match="malformed CSV"):
        read_identifier_column(io.StringIO('a\n"unterminated\n'), "a")
    with pytest.raises(ConfigError, match="cannot read"):
        read_identifier_column(tmp_path / "missing.csv", "a")
    with pytest.raises(ConfigError, match="needs header"):
        read_identifier_column(io.StringIO("a\n"), "a", header=False)
    with pytest.raises(ConfigError):
        read_identifier_column(io.StringIO("a\n"), -1)
    with pytest.raises(ConfigError, match="no header"):
        read_identifier_column(io.StringIO("\n\n"), "a")


def test_csv_to_prepared_set(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("mrn\nA-1\n a-1 \nB-2\n", encoding="utf-8")
    ids = read_identifier_column(path, "mrn")
    with pytest.raises(ConfigError, match="duplicate"):
        prepare_identifiers(ids, cfg(normalization=Normalization(casefold=True)))
    assert prepare_identifiers(ids, cfg()).size == 3
