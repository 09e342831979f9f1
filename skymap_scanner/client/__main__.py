"""``python -m skymap_scanner.client``: fit pixels for a scan server.

Long-lived mode (``--client-startup-json PATH``): load the event and reco once,
then consume work messages, fit, publish the reply and only then ack, until no
work arrives for a while or the server's scan-over message arrives (it is put
back on the work queue for the next client, then this one exits 0). A client
started from a startup JSON the server has marked as over exits 0 at once. Single-message mode (``--infile IN --outfile OUT``,
for the EWMS pilot): fit the one work message in IN and write the reply to OUT.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError, MessageError, SkyScanError
from ..threads import single_threaded_math

single_threaded_math()  # one client per core: no threaded BLAS (before numpy is imported)

LOGGER = logging.getLogger("skymap_scanner.client")
SESSION_IDLE_S = 5  # s without work before a subscription is closed and re-opened


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m skymap_scanner.client",
                                description="Fit pixels for a skymap_scanner server over a broker (or one "
                                            "message from a file, for the EWMS pilot).")
    p.add_argument("--client-startup-json", type=Path, required=True,
                   help="the JSON the server wrote (scan id, queues, reco, event)")
    p.add_argument("--infile", type=Path, default=None, help="single-message mode: the work message (JSON)")
    p.add_argument("--outfile", type=Path, default=None, help="single-message mode: where the reply goes (JSON)")
    p.add_argument("--version", action="version", version=f"skymap_scanner {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.infile is None) != (args.outfile is None):
        print("skymap_scanner.client: error: --infile and --outfile go together", file=sys.stderr)
        return 2
    try:
        from ..config import read_env_config, setup_logging

        cfg = read_env_config()
        setup_logging(cfg)
        if args.infile is not None:
            return _single(args)
        return asyncio.run(_serve(args, cfg))
    except SkyScanError as e:
        print(f"skymap_scanner.client: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _load(startup: dict[str, Any]) -> Any:
    from ..events import event_from_json_dict
    from ..worker import PixelWorker

    event = event_from_json_dict(startup["event"], "client-startup event")
    # host, process and a random tag: containers on one host network share the hostname and often the pid
    name = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
    return PixelWorker(event, startup["reco_algo"], startup.get("reco_options") or {}, name)


def startup_key(startup: dict[str, Any], path: Path) -> bytes:
    """The scan's signing key from the client-startup JSON (never logged)."""
    try:
        key = bytes.fromhex(str(startup["scan_key"]))
    except ValueError:
        raise ConfigError(f"{path}: 'scan_key' is not a hex key") from None
    if len(key) < 16:
        raise ConfigError(f"{path}: 'scan_key' is too short")
    return key


def _single(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_text
    from ..messages import ScanOverMessage
    from ..signing import Verifier, seal
    from ..transport.mq import read_startup_json
    from ..transport.worker_loop import intake

    startup = read_startup_json(args.client_startup_json)
    key = startup_key(startup, args.client_startup_json)
    try:
        raw = args.infile.read_bytes()
    except OSError as e:
        raise ConfigError(f"{args.infile}: cannot read ({e.strerror})") from None
    try:
        work = intake(raw, startup["scan_id"], Verifier(key, "work"))  # the same intake as the long-lived loop
    except MessageError as e:
        raise MessageError(f"{args.infile}: {e}") from None
    if isinstance(work, ScanOverMessage):
        # the pilot needs an outfile; this one is nobody's result (a server still listening drops it)
        LOGGER.info("the scan is over (%s): nothing to fit", work.reason)
        atomic_write_text(args.outfile, json.dumps({"scan_over": work.reason}))
        return 0
    reply = _load(startup).handle(work)
    atomic_write_text(args.outfile, json.dumps(seal(reply.to_dict(), "result", key)))
    return 0


async def _serve(args: argparse.Namespace, cfg: Any) -> int:
    from ..transport.mq import MQWorkerChannel, broker_settings, read_startup_json, redact_address
    from ..transport.mq_wire import queue_missing
    from ..transport.worker_loop import serve

    startup = read_startup_json(args.client_startup_json)
    over = startup.get("scan_over")
    if over:
        LOGGER.info("scan %s is over (%s): nothing to do", startup["scan_id"],
                    over.get("reason", "?") if isinstance(over, dict) else over)
        return 0
    address = cfg.SKYSCAN_BROKER_ADDRESS or startup["broker_address"]
    # the broker type comes with the address: from the environment if it names one, else from the server
    client = cfg.SKYSCAN_BROKER_CLIENT if cfg.SKYSCAN_BROKER_ADDRESS else startup["broker_client"]
    settings = broker_settings(cfg, address, client)
    expiry = startup.get("queue_expiry_s", 0.0)  # the queues must be declared as the server declared them
    settings = dataclasses.replace(settings, expiry_s=float(expiry) if isinstance(expiry, (int, float)) else 0.0)
    settings.make_queue(startup["queue_to_clients"])  # a bad broker type or missing extra: one-line error now
    key = startup_key(startup, args.client_startup_json)
    if await queue_missing(settings, startup["queue_to_clients"]):
        # the server declares both queues before it writes the startup JSON and deletes them when the scan
        # ends: a copy of the JSON made earlier (an HTCondor job started late) must not wait an hour
        LOGGER.info("scan %s has no work queue %s on the broker: the scan is over or unknown; nothing to do",
                    startup["scan_id"], startup["queue_to_clients"])
        return 0
    worker = _load(startup)
    scan_id = startup["scan_id"]
    LOGGER.info("client for scan %s: reco %s, broker %s at %s, queues %s -> %s", scan_id, startup["reco_algo"],
                settings.client, redact_address(settings.address), startup["queue_to_clients"],
                startup["queue_from_clients"])
    channel = MQWorkerChannel(settings, startup["queue_to_clients"], startup["queue_from_clients"],
                              worker.client_name)
    server_run = startup.get("server_run")
    stats = await serve(channel, worker.handle, scan_id, key,
                        first_wait_s=cfg.SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE,
                        idle_s=cfg.SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE, session_idle_s=SESSION_IDLE_S,
                        server_run=server_run if isinstance(server_run, str) else None)
    if stats.scan_over is not None:
        await relay_scan_over(settings, startup["queue_to_clients"], stats.scan_over)
    return 0


async def relay_scan_over(settings: Any, queue_to_clients: str, raw: Any, timeout_s: float = 10.0) -> None:
    """Put the scan-over message back on the work queue, for the next client (and any started later)."""
    from ..transport.mq_wire import open_pub

    async def send() -> None:
        # passive: a queue the server has deleted in the meantime must not be created again (a leftover);
        # and never mqclient's own declaration, refused for a queue declared with an expiry
        async with open_pub(settings, queue_to_clients, subscribe_first=False, passive=True) as pub:
            await pub.send(raw if isinstance(raw, dict) else json.loads(raw))

    try:
        await asyncio.wait_for(send(), timeout_s)
    except Exception as e:  # the queue may be gone already: then nobody needs telling
        LOGGER.info("could not pass the scan-over message on (%s)", type(e).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
