"""The one worker loop: embedded worker processes, broker clients and the in-memory stub all run
:func:`serve` over their :class:`~skymap_scanner.transport.contract.WorkerChannel`.

Per delivery: :func:`intake` checks the signature and turns the raw payload into a :class:`WorkMessage`
(or drops it, counted and logged); a signed "started" signal goes back at once (the server's lease on the
batch runs from then), the handler fits it, the reply goes out signed with the scan's key, and only then
is the delivery acknowledged (by asking the session for the next one). A failing connection is re-opened
after the :class:`Backoff` delay; the loop ends when the channel closes, no work came for the idle
limit, or the server's signed scan-over message arrives (kept in :attr:`ServeStats.scan_over`, raw, so
a broker client can put it back for the next client).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import MessageError
from ..intake import DropLog, accept_work
from ..messages import ResultMessage, ScanOverMessage, StartedMessage, WorkMessage
from ..signing import Verifier, seal
from .backoff import Backoff
from .contract import WorkerChannel, WorkerSession

LOGGER = logging.getLogger(__name__)
KEEPALIVE_S = 5.0  # s between services of the connection while a batch is being fitted

Handler = Callable[[WorkMessage], ResultMessage]


@dataclass
class ServeStats:
    done: int = 0  # work messages fitted and answered
    dropped: int = 0  # deliveries refused by intake
    reconnects: int = 0
    scan_over: Any = None  # the raw scan-over delivery that ended the loop (None: it ended otherwise)
    scan_over_reason: str = ""


intake = accept_work  # every delivery passes here first: see skymap_scanner.intake


async def fit_keeping_alive(handle: Handler, work: WorkMessage, session: WorkerSession,
                            every_s: float = KEEPALIVE_S) -> ResultMessage:
    """``handle(work)``; for sessions that need it, in a thread while :meth:`WorkerSession.keepalive`
    services the connection every ``every_s`` s."""
    if not session.needs_keepalive:
        return handle(work)
    task = asyncio.ensure_future(asyncio.to_thread(handle, work))
    while True:
        done, _ = await asyncio.wait({task}, timeout=every_s)
        if done:
            return task.result()
        await session.keepalive()


async def serve(channel: WorkerChannel, handle: Handler, scan_id: str | None, key: bytes, *,
                first_wait_s: float | None = None, idle_s: float | None = None, session_idle_s: float = 5.0,
                backoff: Backoff | None = None, log_every: int = 50, stats: ServeStats | None = None,
                server_run: str | None = None) -> ServeStats:
    """Fit work from ``channel`` until it closes, until no work came for ``first_wait_s`` (before the
    first delivery) / ``idle_s`` (after it) (``None`` waits without limit), or until the scan-over
    message of server run ``server_run`` (None: of any run) arrives. Counts go to ``stats`` (live)."""
    stats = ServeStats() if stats is None else stats
    verifier = Verifier(key, "work")  # no replay check: a redelivered batch is legitimate work
    drops = DropLog(LOGGER, f"a work message ({channel.name})")
    backoff = backoff or Backoff()
    t_last = time.monotonic()
    limit: float | None = first_wait_s
    while not channel.closed:
        limit = first_wait_s if stats.done + stats.dropped == 0 else idle_s
        session_s = session_idle_s
        if limit is not None:
            remaining = limit - (time.monotonic() - t_last)
            if remaining <= 0:
                break
            # an idle session ends after about twice its idle time (mqclient's reserve channel)
            session_s = max(1, int(min(remaining / 2, session_idle_s)))
        try:
            async with channel.session(session_s) as session:
                t_prev = time.monotonic()
                async for raw in session:
                    gap = time.monotonic() - t_prev
                    t_last = time.monotonic()
                    backoff.succeeded()
                    try:
                        work = intake(raw, scan_id, verifier)
                        if isinstance(work, ScanOverMessage) and server_run is not None \
                                and work.server_run != server_run:
                            raise MessageError(f"a scan-over of an earlier run of the scan ({work.reason})")
                    except MessageError as e:
                        stats.dropped += 1
                        drops.drop(e)
                    else:
                        if isinstance(work, ScanOverMessage):
                            stats.scan_over, stats.scan_over_reason = raw, work.reason
                            LOGGER.info("%s: the server says the scan is over (%s): done after %d messages",
                                        channel.name, work.reason, stats.done)
                            break
                        started = StartedMessage(work.scan_id, work.batch_id, channel.name, secrets.token_hex(8),
                                                 stats.dropped)
                        await session.reply(seal(started.to_dict(), "result", key))  # the lease runs from now
                        reply = await fit_keeping_alive(handle, work, session)
                        await session.reply(seal(reply.to_dict(), "result", key))
                        stats.done += 1
                        if log_every and stats.done % log_every == 0:
                            LOGGER.info("%s: %d work messages done", channel.name, stats.done)
                    t_last = t_prev = time.monotonic()
                    if channel.closed or gap >= session_s:
                        break  # a delivery after an idle gap may have come on a stale channel: re-open
        except Exception as e:  # broker gone, connection lost, a failed fit: re-open after the back-off
            if channel.closed or stats.scan_over is not None:
                break
            stats.reconnects += 1
            delay = backoff.failed()
            LOGGER.warning("%s: connection problem (%s: %s); reconnecting in %.1f s", channel.name,
                           type(e).__name__, e, delay)
            await asyncio.sleep(delay)
        if stats.scan_over is not None:
            break
    if limit is not None and not channel.closed and stats.scan_over is None:
        LOGGER.info("%s: no work for %.0f s: done after %d messages (%d dropped)", channel.name, limit,
                    stats.done, stats.dropped)
    return stats
