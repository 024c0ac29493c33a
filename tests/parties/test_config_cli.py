"""Node config, federation files and the offline CLI commands (init, fingerprint, federation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpc.errors import ConfigError
from parties.cli import main
from parties.config import load_federation, load_node_config, parse_address


def init(tmp_path: Path, name: str, port: int) -> Path:
    d = tmp_path / name
    assert main(["init", name, "--address", f"127.0.0.1:{port}", "--dir", str(d)]) == 0
    return d


def test_init_fingerprint_federation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = init(tmp_path, "hospital-a", 7001), init(tmp_path, "hospital-b", 7002)
    assert (a / "hospital-a.key").stat().st_mode & 0o077 == 0
    capsys.readouterr()
    assert main(["fingerprint", "--dir", str(a)]) == 0
    fp = capsys.readouterr().out.strip()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert main(["fingerprint", "--dir", str(a), "--toml"]) == 0
    entry = capsys.readouterr().out
    assert "BEGIN CERTIFICATE" in entry and fp in entry
    fed = tmp_path / "federation.toml"
    assert main(["federation", "--out", str(fed), str(a), str(b)]) == 0
    federation = load_federation(fed)
    assert federation.names == ("hospital-a", "hospital-b")
    assert federation.by_name("hospital-a").fingerprint == fp
    cfg = load_node_config(a / "node.toml")
    assert cfg.name == "hospital-a" and cfg.port == 7001 and cfg.key_path == (a / "hospital-a.key").resolve()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    init(tmp_path, "hospital-a", 7001)
    assert main(["init", "hospital-a", "--address", "127.0.0.1:7001", "--dir", str(tmp_path / "hospital-a")]) == 2


def test_init_rejects_bad_address(tmp_path: Path) -> None:
    assert main(["init", "x", "--address", "nohostport", "--dir", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize(
    "text,expected",
    [("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:7000", ("::1", 7000)), ("node.example.org:65535", ("node.example.org", 65535))],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host", "host:0", "host:70000", "ho st:1", ":80"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "body,needle",
    [
        ("", "missing key(s) node"),
        ("[node]\nname='a'\n", "missing key(s)"),
        ("[node]\nname='a'\nlisten='h:1'\nkey='k'\ncertificate='c'\nfederation='f'\ncolour='red'\n", "unknown key(s) colour"),
        ("[node]\nname='a'\nlisten='h:1'\nkey='k'\ncertificate='c'\nfederation='f'\nrecv_timeout=-1\n", "positive"),
        ("[node]\nname='a'\nlisten='h'\nkey='k'\ncertificate='c'\nfederation='f'\n", "HOST:PORT"),
        ("[node]\nname='a'\nlisten='h:1'\nkey='k'\ncertificate='c'\nfederation='f'\n[policy]\nallowed_jobs=['rm-rf']\n", "unknown job kind"),
        ("[node]\nname='a'\nlisten='h:1'\nkey='k'\ncertificate='c'\nfederation='f'\n[datasets.x]\npath=3\n", "non-empty string"),
        ("[node\n", "invalid TOML"),
    ],
)
def test_bad_node_config(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_node_config(write(tmp_path / "node.toml", body))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_node_config(tmp_path / "nope.toml")


def test_federation_rejects_tampered_certificate_and_duplicates(tmp_path: Path) -> None:
    a, b = init(tmp_path, "hospital-a", 7001), init(tmp_path, "hospital-b", 7002)
    fed = tmp_path / "federation.toml"
    assert main(["federation", "--out", str(fed), str(a), str(b)]) == 0
    text = fed.read_text()
    fp_a = load_federation(fed).by_name("hospital-a").fingerprint
    fp_b = load_federation(fed).by_name("hospital-b").fingerprint
    # hospital-a's entry pinned to hospital-b's fingerprint: the certificate no longer matches.
    with pytest.raises(ConfigError):
        load_federation(write(tmp_path / "f1.toml", text.replace(fp_a, fp_b, 1)))
    with pytest.raises(ConfigError, match="duplicate"):
        load_federation(write(tmp_path / "f2.toml", text.replace('name = "hospital-b"', 'name = "hospital-a"')))
    with pytest.raises(ConfigError, match="missing"):
        load_federation(write(tmp_path / "f3.toml", "[[party]]\nname='x'\n"))


_MINIMAL = "[node]\nname='a'\nlisten='h:1'\nkey='k'\ncertificate='c'\nfederation='f'\n"


def test_offload_compute_defaults_to_the_cores_and_can_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from parties import aio

    for cores, expected in ((1, False), (2, True), (8, True)):
        monkeypatch.setattr(aio, "available_cores", lambda cores=cores: cores)
        assert load_node_config(write(tmp_path / "node.toml", _MINIMAL)).offload_compute is expected
    for value in (True, False):
        cfg = load_node_config(write(tmp_path / "node.toml", _MINIMAL + f"offload_compute={str(value).lower()}\n"))
        assert cfg.offload_compute is value
    with pytest.raises(ConfigError, match="offload_compute: expected true or false"):
        load_node_config(write(tmp_path / "node.toml", _MINIMAL + "offload_compute='yes'\n"))


def test_local_federation_nodes_share_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes made to run side by side on this machine offload only with two cores each."""
    from parties import aio
    from parties.local import create_local_federation

    monkeypatch.setattr(aio, "available_cores", lambda: 4)
    two = create_local_federation(tmp_path / "two", ["a", "b"])
    three = create_local_federation(tmp_path / "three", ["a", "b", "c"])
    assert all(p.config().offload_compute for p in two)
    assert not any(p.config().offload_compute for p in three)
