"""``mpc-party``: the operator's and analyst's command line. The only module that reads argv.

Commands::

    mpc-party init NAME --address HOST:PORT --dir DIR   key, certificate, node.toml
    mpc-party fingerprint [--dir DIR | --config FILE] [--toml]
    mpc-party federation --out FILE DIR [DIR ...]       build a federation file from node dirs
    mpc-party start --config FILE                       run a node until SIGTERM / Ctrl-C
    mpc-party status --config FILE                      peers, connections, jobs of a running node
    mpc-party submit JOB.toml --config FILE             propose a job (manifest), show progress, result
    mpc-party jobs --config FILE                        jobs of a running node and their states
    mpc-party result JOB_ID --config FILE               an output released to this node
    mpc-party cancel JOB_ID --config FILE               cancel a running job (on every party)
    mpc-party audit [--job JOB_ID] --config FILE        the node's audit log
    mpc-party sum --config FILE --dataset D --columns a,b [--parties ...] [--receivers ...]
    mpc-party local N --dir DIR                         N identities + federation + N node processes
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from mpc.errors import MPCError
from parties import aio
from parties.config import dump_federation, load_node_config, parse_address, party_entry, write_node_config
from parties.control import request
from transport.identity import Federation, Identity, PeerInfo, generate_identity

__all__ = ["main"]


def _config_path(args: argparse.Namespace) -> Path:
    if getattr(args, "config", None):
        return Path(args.config)
    return Path(getattr(args, "dir", None) or ".") / "node.toml"


def cmd_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    parse_address(args.address)
    if (directory / "node.toml").exists():
        print(f"error: {directory / 'node.toml'} exists; refusing to overwrite a party", file=sys.stderr)
        return 2
    identity = generate_identity(args.name, directory)
    write_node_config(directory, name=args.name, listen=args.address)
    print(f"created party {args.name} in {directory}")
    print(f"fingerprint {identity.fingerprint}")
    print("next: send your entry (mpc-party fingerprint --dir DIR --toml) to the other operators,")
    print("confirm their fingerprints out of band, and put every entry in DIR/federation.toml")
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    peer = _own_entry(_config_path(args))
    if args.toml:
        import tomli_w

        print(tomli_w.dumps({"party": [party_entry(peer)]}, multiline_strings=True), end="")
    else:
        print(peer.fingerprint)
    return 0


def _own_entry(config_path: Path) -> PeerInfo:
    cfg = load_node_config(config_path)
    identity = Identity(cfg.name, cfg.key_path, cfg.cert_path).load()
    return PeerInfo.from_certificate(cfg.name, cfg.host, cfg.port, identity.cert_path)


def cmd_federation(args: argparse.Namespace) -> int:
    parties = [_own_entry(Path(d) / "node.toml") for d in args.dirs]
    federation = Federation(tuple(parties))
    dump_federation(federation, args.out)
    print(f"wrote {args.out} with {len(parties)} parties")
    return 0


def _setup_logging(level: str, logfile: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile))
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )


def cmd_start(args: argparse.Namespace) -> int:
    from parties.node import Node

    cfg = load_node_config(_config_path(args))
    _setup_logging(args.log_level, cfg.state_dir / "node.log")

    async def run() -> None:
        node = Node(cfg)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.start()
        # The node's long-lived setup objects go to the permanent generation, so the garbage
        # collector's full passes during jobs skip them (they cost ~20% CPU in small rounds).
        gc.freeze()
        try:
            await stop.wait()
        finally:
            await node.stop()

    aio.run(run())
    return 0


def _control(args: argparse.Namespace, req: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    cfg = load_node_config(_config_path(args))
    return asyncio.run(request(cfg.control_socket, req, timeout=timeout))


def cmd_status(args: argparse.Namespace) -> int:
    resp = _control(args, {"op": "status"}, timeout=10)
    if args.json:
        print(json.dumps(resp, indent=2))
        return 0 if resp.get("ok") else 1
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"node [bold]{resp.get('name')}[/bold]")
    table = Table("peer", "state", "reconnects", "bytes sent", "bytes received")
    for peer, st in sorted((resp.get("mesh", {}).get("peers") or {}).items()):
        table.add_row(
            peer,
            str(st.get("state")),
            str(st.get("reconnects", "")),
            str(st.get("bytes_sent", "")),
            str(st.get("bytes_received", "")),
        )
    console.print(table)
    _print_jobs(resp.get("jobs", []))
    return 0


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "kind", "name", "proposer", "state", "progress", "bytes sent", "error")
    for j in jobs:
        table.add_row(
            j["job_id"][:12],
            j["kind"],
            j.get("name", ""),
            j["proposer"],
            j["state"],
            f"{100 * j.get('progress', {}).get('fraction', 0):.0f}%",
            str(j.get("stats", {}).get("bytes_sent", "")),
            j.get("error") or "",
        )
    Console().print(table)


def cmd_jobs(args: argparse.Namespace) -> int:
    resp = _control(args, {"op": "jobs"}, timeout=10)
    if args.json:
        print(json.dumps(resp, indent=2))
    else:
        _print_jobs(resp.get("jobs", []))
    return 0


def _names(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def sum_manifest(parties: list[str], dataset: str, columns: list[str], receivers: list[str] | None, scale_bits: int) -> dict[str, Any]:
    """The manifest ``mpc-party sum`` submits: every party sums the same dataset and columns."""
    return {
        "kind": "secure-sum",
        "name": f"sum of {', '.join(columns)} in {dataset}",
        "parties": parties,
        "inputs": {p: {"dataset": dataset, "columns": columns} for p in parties},
        "outputs": {"result": receivers or parties},
        "params": {"scale_bits": scale_bits},
    }


def cmd_sum(args: argparse.Namespace) -> int:
    from parties.config import load_federation

    cfg = load_node_config(_config_path(args))
    parties = _names(args.parties) or list(load_federation(cfg.federation_path).names)
    manifest = sum_manifest(parties, args.dataset, _names(args.columns) or [], _names(args.receivers), args.scale_bits)
    return _submit(cfg.control_socket, manifest, progress=not args.json, as_json=args.json)


def cmd_submit(args: argparse.Namespace) -> int:
    from parties.manifest import load_manifest

    cfg = load_node_config(_config_path(args))
    manifest = load_manifest(args.manifest).to_dict()
    return _submit(cfg.control_socket, manifest, progress=not args.json, as_json=args.json)


def _submit(socket_path: Path, manifest: dict[str, Any], *, progress: bool, as_json: bool) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from parties.control import stream

    console = Console(stderr=True)

    async def run() -> dict[str, Any]:
        final: dict[str, Any] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[label]}"), TimeElapsedColumn(), console=console, disable=not progress) as bar:
            task = bar.add_task(manifest.get("kind", "job"), total=1.0, label="proposing")
            async for event in stream(socket_path, {"op": "submit", "manifest": manifest}, timeout=float(manifest.get("timeout", 600)) + 60):
                if event.get("event") == "progress":
                    bar.update(task, completed=event["fraction"], label=f"{event['state']}: {event['label']}")
                elif event.get("event") == "proposed":
                    bar.update(task, description=f"{manifest.get('kind')} {event['job']['job_id'][:12]}")
                else:
                    final = event
        return final

    resp = asyncio.run(run())
    resp.pop("event", None)
    if as_json or not resp.get("ok"):
        print(json.dumps(resp, indent=2))
    else:
        job = resp["job"]
        console.print(f"job {job['job_id']} done; manifest sha256 {job['hash']}")
        for name, st in sorted(resp.get("parties", {}).items()):
            console.print(f"  {name}: {st.get('state')}")
        print(json.dumps(resp.get("outputs", {}), indent=2))
    return 0 if resp.get("ok") else 1


def cmd_result(args: argparse.Namespace) -> int:
    resp = _control(args, {"op": "result", "job_id": args.job_id}, timeout=10)
    print(json.dumps(resp.get("result", resp), indent=2))
    return 0 if resp.get("ok") else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    resp = _control(args, {"op": "cancel", "job_id": args.job_id}, timeout=30)
    print(json.dumps(resp, indent=2))
    return 0 if resp.get("ok") else 1


def cmd_audit(args: argparse.Namespace) -> int:
    resp = _control(args, {"op": "audit", "job_id": args.job}, timeout=10)
    if args.json or not resp.get("ok"):
        print(json.dumps(resp, indent=2))
        return 0 if resp.get("ok") else 1
    print_audit(resp["entries"])
    return 0


def print_audit(entries: list[dict[str, Any]], title: str | None = None) -> None:
    """Print audit entries as a table."""
    import datetime as dt

    from rich.console import Console
    from rich.table import Table

    table = Table("time", "event", "actor", "job", "detail", title=title)
    for e in entries:
        detail = {k: v for k, v in e["detail"].items() if k not in ("manifest",)}
        table.add_row(
            dt.datetime.fromtimestamp(e["ts"]).strftime("%H:%M:%S.%f")[:-3],
            e["event"],
            e["actor"],
            (e["job_id"] or "")[:12],
            ", ".join(f"{k}={v}" for k, v in sorted(detail.items()) if v not in (None, "")),
        )
    Console(width=160).print(table)


def cmd_local(args: argparse.Namespace) -> int:
    from parties.local import run_local_federation

    _setup_logging(args.log_level)
    return run_local_federation(Path(args.dir), args.n, base_port=args.base_port)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mpc-party``."""
    p = argparse.ArgumentParser(prog="mpc-party", description="Run and use a multi-party computation node.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("init", help="create a party's key, certificate and node config")
    s.add_argument("name")
    s.add_argument("--address", required=True, help="HOST:PORT the node serves its peers on")
    s.add_argument("--dir", required=True)
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("fingerprint", help="print this party's certificate fingerprint")
    s.add_argument("--dir")
    s.add_argument("--config")
    s.add_argument("--toml", action="store_true", help="print a [[party]] entry for federation.toml")
    s.set_defaults(func=cmd_fingerprint)

    s = sub.add_parser("federation", help="write a federation file from node directories")
    s.add_argument("--out", required=True)
    s.add_argument("dirs", nargs="+")
    s.set_defaults(func=cmd_federation)

    s = sub.add_parser("start", help="run a node")
    s.add_argument("--config", required=True)
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=cmd_start)

    for name, func, helptext in (("status", cmd_status, "show a running node's peers and jobs"), ("jobs", cmd_jobs, "list a running node's jobs")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--config")
        s.add_argument("--dir")
        s.add_argument("--json", action="store_true")
        s.set_defaults(func=func)

    s = sub.add_parser("submit", help="propose a job from a manifest file and wait for it")
    s.add_argument("manifest")
    s.add_argument("--config")
    s.add_argument("--dir")
    s.add_argument("--json", action="store_true", help="no progress bar; print the response as JSON")
    s.set_defaults(func=cmd_submit)

    s = sub.add_parser("sum", help="securely sum dataset columns across the federation")
    s.add_argument("--config")
    s.add_argument("--dir")
    s.add_argument("--dataset", required=True)
    s.add_argument("--columns", required=True, help="comma-separated column names")
    s.add_argument("--parties", help="comma-separated party names (default: the whole federation)")
    s.add_argument("--receivers", help="comma-separated receivers (default: every party)")
    s.add_argument("--scale-bits", type=int, default=16)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sum)

    for name, func, helptext in (
        ("result", cmd_result, "print an output released to this node"),
        ("cancel", cmd_cancel, "cancel a running job on every party"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("job_id")
        s.add_argument("--config")
        s.add_argument("--dir")
        s.set_defaults(func=func)

    s = sub.add_parser("audit", help="print the node's audit log")
    s.add_argument("--job", help="only this job")
    s.add_argument("--config")
    s.add_argument("--dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("local", help="create and run an N-party federation on 127.0.0.1")
    s.add_argument("n", type=int)
    s.add_argument("--dir", required=True)
    s.add_argument("--base-port", type=int, default=0, help="first port (default: free ports)")
    s.add_argument("--log-level", default="warning")
    s.set_defaults(func=cmd_local)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mpc-party``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MPCError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
