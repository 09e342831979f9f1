"""``python -m skymap_scanner.client``: fit pixels for a scan server.

Long-lived mode (``--client-startup-json PATH``): load the event and reco once,
then consume work messages, fit, publish the reply and only then ack, until no
work arrives for a while. Single-message mode (``--infile IN --outfile OUT``,
for the EWMS pilot): fit the one work message in IN and write the reply to OUT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError, MessageError, SkyScanError
from ..utils import single_threaded_math

single_threaded_math()  # one client per core: no threaded BLAS (before numpy is imported)

LOGGER = logging.getLogger("skymap_scanner.client")
SESSION_IDLE_S = 5  # s without work before a subscription is closed and re-opened
KEEPALIVE_S = 5.0  # s between services of the broker connection while a batch is being fitted


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


def _pika_connections(resources: tuple[Any, ...]) -> list[Any]:
    """The pika connections inside mqclient's RabbitMQ sub/pub resources (none for other brokers)."""
    out = []
    for r in resources:
        inner = getattr(r, "_sub", None) or getattr(r, "pub", None)
        conn = getattr(inner, "connection", None)
        if conn is not None and hasattr(conn, "process_data_events"):
            out.append(conn)
    return out


async def fit_keeping_alive(handle: Callable[[Any], Any], work: Any, resources: tuple[Any, ...],
                            every_s: float = KEEPALIVE_S) -> Any:
    """``handle(work)`` in a worker thread while the broker connections stay serviced: pika's
    blocking connections send heartbeats only when their events are processed (a batch of long fits
    would otherwise get the connection closed by RabbitMQ), and NATS pings run on the event loop."""
    task = asyncio.ensure_future(asyncio.to_thread(handle, work))
    while True:
        done, _ = await asyncio.wait({task}, timeout=every_s)
        if done:
            return task.result()
        for conn in _pika_connections(resources):
            try:
                conn.process_data_events(time_limit=0)
            except Exception as e:  # a lost connection shows when the reply is published
                LOGGER.warning("servicing the broker connection during a fit failed (%s)", type(e).__name__)


def _load(startup: dict[str, Any]) -> Any:
    from ..events import event_from_json_dict
    from ..worker import PixelWorker

    event = event_from_json_dict(startup["event"], "client-startup event")
    # host, process and a random tag: containers on one host network share the hostname and often the pid
    name = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
    return PixelWorker(event, startup["reco_algo"], startup.get("reco_options") or {}, name)


def _single(args: argparse.Namespace) -> int:
    from ..messages import decode_work
    from ..transport.mq import read_startup_json
    from ..utils.atomic import atomic_write_text

    startup = read_startup_json(args.client_startup_json)
    try:
        raw = args.infile.read_bytes()
    except OSError as e:
        raise ConfigError(f"{args.infile}: cannot read ({e.strerror})") from None
    work = decode_work(raw)
    if work.scan_id != startup["scan_id"]:
        raise MessageError(f"{args.infile}: work for scan {work.scan_id!r}, not {startup['scan_id']!r}")
    reply = _load(startup).handle(work)
    atomic_write_text(args.outfile, json.dumps(reply.to_dict(), allow_nan=False))
    return 0


async def _serve(args: argparse.Namespace, cfg: Any) -> int:
    from ..messages import decode_work
    from ..transport.mq import broker_settings, read_startup_json, redact_address

    startup = read_startup_json(args.client_startup_json)
    address = cfg.SKYSCAN_BROKER_ADDRESS or startup["broker_address"]
    # the broker type comes with the address: from the environment if it names one, else from the server
    client = cfg.SKYSCAN_BROKER_CLIENT if cfg.SKYSCAN_BROKER_ADDRESS else startup["broker_client"]
    settings = broker_settings(cfg, address, client)
    settings.make_queue(startup["queue_to_clients"])  # a bad broker type or missing extra: one-line error now
    worker = _load(startup)
    scan_id = startup["scan_id"]
    LOGGER.info("client for scan %s: reco %s, broker %s at %s, queues %s -> %s", scan_id, startup["reco_algo"],
                settings.client, redact_address(settings.address), startup["queue_to_clients"],
                startup["queue_from_clients"])
    n_done = n_dropped = 0
    first_wait = cfg.SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE
    idle_wait = cfg.SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE
    t_last = time.monotonic()
    delay = 0.5
    while True:
        limit = first_wait if n_done + n_dropped == 0 else idle_wait
        remaining = limit - (time.monotonic() - t_last)
        if remaining <= 0:
            break
        # short subscriptions, re-opened after any idle gap: mqclient's RabbitMQ subscriber strands
        # messages on its first channel once it has been idle (see skymap_scanner.transport.mq)
        # (an idle subscription ends after twice its timeout: first channel, then mqclient's reserve)
        session_s = max(1, int(min(remaining / 2, SESSION_IDLE_S)))
        try:
            in_q = settings.make_queue(startup["queue_to_clients"], prefetch=1, timeout_s=session_s)
            out_q = settings.make_queue(startup["queue_from_clients"])
            # open_sub acks a message only when the loop body finished (reply published) and asks
            # for the next; an exception in the body nacks it (requeued). A crash in between only
            # makes a duplicate, which the server drops.
            async with out_q.open_pub() as pub, in_q.open_sub() as sub:
                t_prev = time.monotonic()
                async for data in sub:
                    gap = time.monotonic() - t_prev
                    t_last = time.monotonic()
                    delay = 0.5
                    try:
                        work = decode_work(data)
                        if work.scan_id != scan_id:
                            raise MessageError(f"work for another scan ({work.scan_id[:64]})")
                    except MessageError as e:
                        n_dropped += 1
                        LOGGER.warning("dropped a work message: %s", e)
                    else:
                        reply = await fit_keeping_alive(worker.handle, work, (sub, pub))
                        await pub.send(reply.to_dict())
                        n_done += 1
                        if n_done % 50 == 0:
                            LOGGER.info("%d work messages done", n_done)
                    t_last = t_prev = time.monotonic()
                    if gap >= session_s:
                        break  # this one may have come on mqclient's reserve channel: re-open
        except Exception as e:  # broker gone, connection lost: reconnect until the idle limit
            LOGGER.warning("broker connection problem (%s: %s); reconnecting in %.1f s", type(e).__name__, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
    LOGGER.info("no work for %.0f s: done after %d messages (%d dropped)", limit, n_done, n_dropped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
