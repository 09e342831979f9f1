#!/usr/bin/env python3
"""Run one distributed scan on this machine: a server and N clients as local processes, over a broker.

    local_scan.py --event-file EVENT --reco-algo dummy --output-dir OUT [--clients 2] [-- more server options]

This is the distributed mode (server and clients talk only through the broker), for trying it on one
machine; ``python -m skymap_scanner.server`` without a broker address (embedded mode) is the simple way
to scan locally. Steps:

1. start ``python -m skymap_scanner.server`` with ``--client-startup-json WORK/startup.json`` and
   ``--cache-dir WORK/cache`` (WORK defaults to OUT/local_scan);
2. wait until the server has written the startup JSON (or has exited);
3. start N ``python -m skymap_scanner.client --client-startup-json WORK/startup.json``;
4. wait for the server; give the clients ``--client-grace`` seconds to finish, then stop them.

The broker comes from SKYSCAN_BROKER_CLIENT / SKYSCAN_BROKER_ADDRESS (or --broker-client /
--broker-address; default rabbitmq at localhost); every other SKYSCAN_* setting is inherited from the
environment. Logs go to WORK/logs/. The exit code is the server's (1 if it had to be stopped).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class LocalScanError(Exception):
    """A wrong argument; ``str()`` is one line (exit code 2)."""


class ScanTimeout(Exception):
    """The startup JSON did not appear, or the scan did not end, in time (exit code 1)."""


@dataclass
class Proc:
    """A started child process and the log file it writes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    log_file: IO[bytes]


def server_command(
    python: str, args: argparse.Namespace, startup_json: Path, cache_dir: Path, extra: Sequence[str]
) -> list[str]:
    """The server's command line (pure: used by main and by the tests)."""
    cmd = [python, "-m", "skymap_scanner.server", "--event-file", str(args.event_file)]
    cmd += ["--reco-algo", args.reco_algo, "--output-dir", str(args.output_dir)]
    cmd += ["--cache-dir", str(cache_dir), "--client-startup-json", str(startup_json)]
    if args.nsides:
        cmd += ["--nsides", *args.nsides]
    if args.predictive_scanning_threshold is not None:
        cmd += ["--predictive-scanning-threshold", str(args.predictive_scanning_threshold)]
    return cmd + list(extra)


def client_command(python: str, startup_json: Path) -> list[str]:
    return [python, "-m", "skymap_scanner.client", "--client-startup-json", str(startup_json)]


def child_environment(environ: dict[str, str], broker_client: str, broker_address: str) -> dict[str, str]:
    """The children's environment: ours, with the broker settings made explicit."""
    env = dict(environ)
    env["SKYSCAN_BROKER_CLIENT"] = broker_client
    env["SKYSCAN_BROKER_ADDRESS"] = broker_address
    return env


def start(name: str, cmd: list[str], env: dict[str, str], logs_dir: Path) -> Proc:
    log = logs_dir / f"{name}.log"
    log_file = open(log, "wb")  # noqa: SIM115 - closed in stop_all
    print(f"local_scan: starting {name}: {' '.join(cmd)} (log: {log})", file=sys.stderr)
    popen = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(name, popen, log, log_file)


def stop_all(procs: Sequence[Proc], term_grace_s: float = 10.0) -> None:
    """SIGTERM every child still running, SIGKILL those still there after ``term_grace_s``."""
    running = [p for p in procs if p.popen.poll() is None]
    for p in running:
        print(f"local_scan: stopping {p.name} (pid {p.popen.pid})", file=sys.stderr)
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + term_grace_s
    for p in running:
        try:
            p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.popen.wait()
    for p in procs:
        p.log_file.close()


def _signal_group(p: Proc, sig: signal.Signals) -> None:
    try:
        os.killpg(p.popen.pid, sig)  # the child leads its own session (start_new_session=True)
    except ProcessLookupError:
        pass


def wait_for_startup(
    server: Proc, startup_json: Path, deadline: float, what: str, poll_s: float = 0.2
) -> bool:
    """True once the startup JSON exists; False if the server exits first; ScanTimeout at ``deadline``."""
    while not startup_json.is_file():
        if server.popen.poll() is not None:
            return False
        if time.monotonic() >= deadline:
            raise ScanTimeout(f"the server wrote no {startup_json} within {what} (see {server.log})")
        time.sleep(poll_s)
    return True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="local_scan.py",
        description="Run a server and N clients as local processes against a broker (distributed mode on one machine). "
        "Arguments after '--' go to the server unchanged.",
    )
    p.add_argument("--event-file", type=Path, required=True, help="event file to scan")
    p.add_argument("--reco-algo", required=True, help="reco plugin name (e.g. dummy)")
    p.add_argument("--output-dir", type=Path, required=True, help="where the server writes the results")
    p.add_argument("--clients", type=int, default=2, help="number of client processes (default 2)")
    p.add_argument(
        "--nsides", nargs="+", default=None, help="nside progression, e.g. 8:0 64:12 (server default)"
    )
    p.add_argument("--predictive-scanning-threshold", type=float, default=None)
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="startup JSON, cache and logs (default OUTPUT_DIR/local_scan)",
    )
    p.add_argument(
        "--broker-client",
        default=os.environ.get("SKYSCAN_BROKER_CLIENT") or "rabbitmq",
        help="rabbitmq, pulsar or nats (default: $SKYSCAN_BROKER_CLIENT or rabbitmq)",
    )
    p.add_argument(
        "--broker-address",
        default=os.environ.get("SKYSCAN_BROKER_ADDRESS") or "localhost",
        help="broker address (default: $SKYSCAN_BROKER_ADDRESS or localhost)",
    )
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the startup JSON (default 300)",
    )
    p.add_argument(
        "--client-grace",
        type=float,
        default=60.0,
        help="seconds the clients get to finish after the server has exited, before they are stopped (default 60)",
    )
    p.add_argument("--timeout", type=float, default=None, help="stop everything after this many seconds")
    p.add_argument(
        "--python", default=sys.executable, help="interpreter for server and clients (default: this one)"
    )
    return p


def split_server_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` at the first ``--``: (our arguments, the server's extra arguments)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    ours, extra = split_server_extra(list(sys.argv[1:] if argv is None else argv))
    args = parser().parse_args(ours)
    procs: list[Proc] = []

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if args.clients < 1:
            raise LocalScanError(f"--clients must be at least 1, got {args.clients}")
        if not args.event_file.is_file():
            raise LocalScanError(f"--event-file: no such file: {args.event_file}")
        work = (args.work_dir or args.output_dir / "local_scan").absolute()
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        startup_json = work / "startup.json"
        startup_json.unlink(
            missing_ok=True
        )  # a stale file from an earlier scan would start clients too early
        env = child_environment(dict(os.environ), args.broker_client, args.broker_address)
        started = time.monotonic()

        server = start(
            "server", server_command(args.python, args, startup_json, work / "cache", extra), env, logs
        )
        procs.append(server)
        startup_deadline = started + args.startup_timeout
        what = f"--startup-timeout {args.startup_timeout:g} s"
        if args.timeout is not None and args.timeout < args.startup_timeout:
            startup_deadline, what = started + args.timeout, f"--timeout {args.timeout:g} s"
        if wait_for_startup(server, startup_json, startup_deadline, what):
            for i in range(args.clients):
                procs.append(start(f"client-{i}", client_command(args.python, startup_json), env, logs))
        else:
            print("local_scan: the server exited before writing the startup JSON", file=sys.stderr)

        remaining = None if args.timeout is None else max(0.0, args.timeout - (time.monotonic() - started))
        try:
            code = server.popen.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            print(f"local_scan: --timeout {args.timeout:g} s reached", file=sys.stderr)
            code = 1
            stop_all(procs)
        clients = procs[1:]
        deadline = time.monotonic() + args.client_grace
        for c in clients:
            try:
                c.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        stop_all(procs)
        for p in procs:
            print(f"local_scan: {p.name} exited with {p.popen.returncode} (log: {p.log})", file=sys.stderr)
        return 1 if code is None or code < 0 else code
    except LocalScanError as e:
        print(f"local_scan: {e}", file=sys.stderr)
        stop_all(procs)
        return 2
    except ScanTimeout as e:
        print(f"local_scan: {e}", file=sys.stderr)
        stop_all(procs)
        return 1
    except KeyboardInterrupt:
        print("local_scan: interrupted", file=sys.stderr)
        stop_all(procs)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
