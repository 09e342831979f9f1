"""Broker transport over oms-mqclient (RabbitMQ by default, NATS, Pulsar).

mqclient's API is asyncio over blocking broker clients, so publishing and
consuming each run in a thread with its own event loop and connection; the scan
loop talks to them through thread-safe queues. Both threads reconnect with
backoff when the broker goes away (a waiting consumer does not reconnect by
itself). Results are acked once handed to the scan loop: a result lost by a
server crash before it was checkpointed is simply re-done on resume.

mqclient's RabbitMQ subscriber, after ``timeout`` s without a message, moves on
to a second ("reserve") channel while the first channel's consumer stays
registered: messages the broker then hands to the first channel sit there
(prefetched, unread) until the second one is idle for ``timeout`` s too. So a
subscription here is used for one stretch of traffic only: the first message
after a gap of ``timeout`` s or more is taken, and then the connection is
re-opened, which returns anything stranded on the old channel to the queue.

Deliveries are taken raw and decoded here with bounds (:mod:`.mq_wire`): garbage, oversized payloads
and zstd bombs are acknowledged, dropped and handed to intake as :class:`~.mq_wire.Undecodable` (counted
as bad messages), never requeued. The queues are deleted when the server's transport closes (after
``SCAN_OVER_LINGER_S``, for waiting clients to read the scan-over), and, if SKYSCAN_MQ_QUEUE_EXPIRY_SEC
is set, declared with an expiry as the safety net for a crash (RabbitMQ ``x-expires``, NATS ``max_age``:
``BrokerSettings.expiry_s``; the client-startup JSON passes it on to the clients).

Every thread here is a daemon and nothing waits without a timeout (no executor threads: the interpreter
joins those at exit), so the server exits within seconds of its last line whatever the broker does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_write_text
from ..config import EnvConfig
from ..errors import ConfigError, SkyScanError
from ..events import native
from .backoff import Backoff
from .contract import ServerTransport, WorkerChannel, WorkerSession
from .mq_wire import Undecodable, delete_queues, open_pub, open_sub

LOGGER = logging.getLogger(__name__)
STARTUP_FORMAT = "skymap-scanner-client-startup/1"
#: s: RabbitMQ x-expires (unused queue) / NATS max_age (message), the crash safety net: 4 days, longer than
#: the server ever waits without a reply (SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS, 3 days), and the server re-declares
#: its to-clients queue hourly, so a live scan's queues never expire. 0 (off) is needed with a stock mqclient
#: consumer such as the EWMS pilot (RabbitMQ refuses its declaration: "inequivalent arg 'x-expires'")
QUEUE_EXPIRY_S = 4 * 24 * 3600.0
READY_WAIT_S = 60.0  # s the server waits for its queues to be declared before writing the startup JSON
REFRESH_DECLARATION_S = 3600.0  # the server re-declares its to-clients queue this often (RabbitMQ expiry)


#: seconds more the server waits, after the linger, for consumers still on a RabbitMQ queue to leave before
#: deleting it (see ``mq_wire.delete_queues``); its own clients pass the scan-over on and leave at once
QUEUE_IN_USE_WAIT_S = 15.0
#: seconds the server waits, after its last message (the scan-over), before deleting the scan's queues:
#: clients waiting on the work queue take the scan-over and exit instead of finding their queue gone
SCAN_OVER_LINGER_S = 3.0


def queue_names(scan_id: str) -> tuple[str, str]:
    """(to-clients, from-clients) queue names: legal on RabbitMQ, NATS and Pulsar."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", scan_id)
    return f"skyscan-{safe}-to-clients", f"skyscan-{safe}-from-clients"


def redact_address(address: str) -> str:
    """The broker address without any password (``[scheme://]user:pass@host`` -> ``[scheme://]user@host``)."""
    return re.sub(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^:/@]*):[^@/]*@", r"\1@", address)


@dataclass(frozen=True)
class BrokerSettings:
    client: str
    address: str
    auth: str  # never logged
    timeout_to_clients_s: int
    heartbeat_s: float = 30.0  # SKYSCAN_MQ_HEARTBEAT_SEC
    expiry_s: float = QUEUE_EXPIRY_S

    def __repr__(self) -> str:
        return (f"BrokerSettings({self.client!r}, {redact_address(self.address)!r}, heartbeat_s={self.heartbeat_s}, "
                f"expiry_s={self.expiry_s})")

    def make_queue(self, name: str, *, prefetch: int = 1, timeout_s: int = 5) -> Any:
        from mqclient import Queue

        try:
            return Queue(self.client, address=self.address, name=name, prefetch=prefetch,
                         timeout=max(1, int(timeout_s)), auth_token=self.auth, retries=2, retry_delay=1.0,
                         except_errors=False)
        except Exception as e:  # unknown broker client, missing extra, bad address
            raise ConfigError(f"cannot set up a {self.client} queue at {redact_address(self.address)}: "
                              f"{type(e).__name__}: {e}") from None


class _Publisher(threading.Thread):
    """Publishes payloads from ``outbox``; reconnects with backoff on failure."""

    def __init__(self, settings: BrokerSettings, name: str, outbox: queue.Queue[dict[str, Any] | None],
                 stop: threading.Event | None = None) -> None:
        super().__init__(name=f"pub-{name}", daemon=True)
        self.settings, self.qname, self.outbox = settings, name, outbox
        self.stop = stop or threading.Event()
        self.error: str | None = None
        self.backoff = Backoff(clock=time.monotonic)
        self.ready = threading.Event()  # connected once: the queue is declared

    @property
    def failing_for(self) -> float:
        """Seconds publishing has been failing (0 when it works)."""
        return self.backoff.failing_for()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _next_payload(self, pub: Any) -> dict[str, Any] | None:
        """The next payload to send (None: stop), servicing the connection while the outbox is empty:
        pika sends heartbeats only when its events are processed, and an idle publisher would otherwise
        have its connection closed by the broker."""
        hb = max(0.5, self.settings.heartbeat_s / 2)
        t_service = t_refresh = time.monotonic()
        while True:
            try:
                return self.outbox.get_nowait()
            except queue.Empty:
                pass
            now = time.monotonic()
            if now - t_service >= hb:
                t_service = now
                conn = pub.pika_connection()
                if conn is not None:
                    conn.process_data_events(time_limit=0)
            if self.settings.expiry_s > 0 and now - t_refresh >= min(REFRESH_DECLARATION_S, self.settings.expiry_s / 4):
                t_refresh = now
                pub.refresh_declaration()
            await asyncio.sleep(0.02)

    async def _main(self) -> None:
        pending: dict[str, Any] | None = None
        while True:
            try:
                async with open_pub(self.settings, self.qname) as pub:
                    self.ready.set()
                    while True:
                        if pending is None:
                            pending = await self._next_payload(pub)
                            if pending is None:
                                return
                        await pub.send(pending)
                        pending = None
                        self.backoff.succeeded()
            except Exception as e:
                self.error = f"{type(e).__name__}: {e}"
                delay = self.backoff.failed()
                LOGGER.warning("publishing to %s failed (%s); reconnecting in %.1f s", self.qname, self.error, delay)
                t_end = time.monotonic() + delay
                while time.monotonic() < t_end and not self.stop.is_set():
                    await asyncio.sleep(0.05)
                if self.stop.is_set():
                    return  # closing while the broker is away: what is unsent is not waited for


class _Consumer(threading.Thread):
    """Consumes from a queue into ``inbox`` (acking each message once handed over)."""

    def __init__(self, settings: BrokerSettings, name: str, inbox: queue.Queue[Any], stop: threading.Event,
                 prefetch: int = 50, idle_s: int = 2) -> None:
        super().__init__(name=f"sub-{name}", daemon=True)
        self.settings, self.qname, self.inbox, self.stop, self.prefetch = settings, name, inbox, stop, prefetch
        self.idle_s = idle_s
        self.dropped = 0  # undecodable deliveries (acked and handed on as Undecodable)
        self.ready = threading.Event()  # connected once: the queue is declared

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                async with open_sub(self.settings, self.qname, self.prefetch, self.idle_s) as sub:
                    self.ready.set()
                    t_last = time.monotonic()
                    while not self.stop.is_set():
                        data = await sub.next()  # acks the one before (it was handed over)
                        if data is None:
                            break  # idle for idle_s: re-open (see the module docstring)
                        if isinstance(data, Undecodable):
                            self.dropped += 1  # acked already; intake counts it as a bad message
                        self.inbox.put(data)
                        backoff.succeeded()
                        now = time.monotonic()
                        gap, t_last = now - t_last, now
                        if gap >= self.idle_s:
                            break  # after an idle gap: re-open (see the module docstring)
            except Exception as e:
                if self.stop.is_set():
                    return
                delay = backoff.failed()
                LOGGER.warning("consuming from %s failed (%s: %s); reconnecting in %.1f s",
                               self.qname, type(e).__name__, e, delay)
                t_end = time.monotonic() + delay
                while time.monotonic() < t_end and not self.stop.is_set():
                    await asyncio.sleep(0.05)


class MQServerTransport(ServerTransport):
    """Server side: work out on the to-clients queue, results in from the from-clients queue."""

    mode = "broker"

    def __init__(self, settings: BrokerSettings, scan_id: str, startup_json: Path, startup_doc: dict[str, Any],
                 min_in_flight_batches: int = 8, batches_per_client: int = 3, client_memory_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.to_clients, self.from_clients = queue_names(scan_id)
        self.startup_json = Path(startup_json)
        self.startup_doc = startup_doc
        self.min_in_flight_batches = min_in_flight_batches
        self.batches_per_client = batches_per_client
        self.client_memory_s = client_memory_s
        self._clock = clock
        self._client_seen: dict[str, float] = {}  # client -> time last seen, oldest first (see receive)
        self._outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._pub = _Publisher(settings, self.to_clients, self._outbox, self._stop)
        self._sub = _Consumer(settings, self.from_clients, self._inbox, self._stop)
        self._closed = False

    def start(self) -> None:
        self.settings.make_queue(self.to_clients)  # a bad broker type or missing extra: fail now, not in a thread
        self._pub.start()
        self._sub.start()
        # the JSON only once both queues exist: a client that finds no work queue takes its scan to be over
        # (no longer than a publish may block: SKYSCAN_MQ_TIMEOUT_TO_CLIENTS then ends the scan as before)
        wait_s = min(READY_WAIT_S, float(self.settings.timeout_to_clients_s))
        deadline = time.monotonic() + wait_s
        for side in (self._pub, self._sub):
            if not side.ready.wait(max(0.0, deadline - time.monotonic())):
                LOGGER.warning("the broker has not confirmed the scan's queues within %.0f s (is it reachable?); "
                               "writing the client-startup JSON anyway, publishing keeps retrying", wait_s)
                break
        # it holds the scan's signing key: readable by its owner only (mode 600)
        atomic_write_text(self.startup_json, json.dumps(self.startup_doc, indent=1), mode=0o600)
        LOGGER.info("wrote client-startup JSON %s (queues %s / %s)", self.startup_json, self.to_clients,
                    self.from_clients)

    @property
    def max_in_flight_batches(self) -> int:  # type: ignore[override]
        """Batches kept in flight: a few per client that replied recently (at least the minimum).

        Enough to keep every client busy with one batch queued behind the one it works on, but not
        more: before the scan loop has learnt the reco's speed its batches are small, and a deep
        window of small batches costs a message round trip per few fits. The window grows as new
        clients answer (about threefold per round trip when many clients join at once).
        """
        return max(self.min_in_flight_batches, self.batches_per_client * len(self._client_seen))

    def send(self, payload: dict[str, Any]) -> None:
        self._outbox.put(payload)

    def receive(self, timeout_s: float) -> list[Any]:
        out = []
        try:
            out.append(self._inbox.get(timeout=timeout_s))
            while len(out) < 1000:
                out.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        now = self._clock()
        seen = self._client_seen
        for raw in out:  # count clients for the window; the scan loop validates the replies themselves
            client = raw.get("client") if isinstance(raw, dict) else None
            if isinstance(client, str) and len(seen) < 100_000:
                key = client[:200]
                seen.pop(key, None)  # re-insert: the dict stays ordered by time last seen, oldest first
                seen[key] = now
        # forget clients not seen for client_memory_s: only the oldest entries need looking at
        while seen:
            oldest = next(iter(seen))
            if now - seen[oldest] <= self.client_memory_s:
                break
            del seen[oldest]
        return out

    def maintain(self) -> list[str]:
        if self._pub.failing_for > self.settings.timeout_to_clients_s:
            raise SkyScanError(f"could not publish to the broker for {self.settings.timeout_to_clients_s} s "
                               f"(SKYSCAN_MQ_TIMEOUT_TO_CLIENTS): {self._pub.error}")
        return []

    @property
    def undecodable_replies(self) -> int:
        """Replies dropped at the broker edge (counted again by intake as bad messages)."""
        return self._sub.dropped

    def close(self, delete: bool = True, linger_s: float | None = None) -> None:
        """Stop publishing (what is queued is sent, for up to a few seconds) and consuming, then, with
        ``delete``, delete the scan's queues after ``linger_s`` s, for waiting clients to read the
        scan-over message (None: ``SCAN_OVER_LINGER_S`` if publishing worked to the end, else 0).
        Never blocks for more than about ``linger_s`` + 10 s, whatever state the broker is in."""
        if self._closed:
            return
        self._closed = True
        self._outbox.put(None)  # after what is queued: the publisher flushes, then stops
        if self._pub.ident is not None:  # started
            self._pub.join(timeout=3)
        self._stop.set()  # a publisher still not done (broker away) gives up now
        # the consumer may be blocked in a broker wait for up to 2 x its idle time; it is a daemon
        # thread and anything it has not acked goes back to the queue, so do not wait for it long
        if self._sub.ident is not None:
            self._sub.join(timeout=1)
        if linger_s is None:
            healthy = self._pub.ident is not None and not self._pub.is_alive() and self._pub.failing_for == 0
            linger_s = SCAN_OVER_LINGER_S if healthy else 0.0
        if delete and self._pub.ident is not None:
            if linger_s > 0:
                time.sleep(linger_s)
            notes = delete_queues(self.settings, [self.to_clients, self.from_clients],
                                  wait_unused_s=QUEUE_IN_USE_WAIT_S if linger_s > 0 else 0.0)
            if notes:
                after = (f"the broker expires them after {self.settings.expiry_s / 3600:.3g} h unused"
                         if self.settings.expiry_s > 0 else "they stay until deleted (SKYSCAN_MQ_QUEUE_EXPIRY_SEC=0)")
                LOGGER.warning("could not delete the scan's queues %s / %s (%s); %s", self.to_clients,
                               self.from_clients, "; ".join(notes), after)
            else:
                LOGGER.info("deleted the scan's queues %s / %s", self.to_clients, self.from_clients)


class _MQSession(WorkerSession):
    """A raw subscription (:class:`~.mq_wire.RawSub`): a delivery is acked when the next one is asked
    for (and the last one on a clean exit); an exception out of the session nacks it, so the broker
    redelivers it. Undecodable deliveries are acked at once and yielded as :class:`~.mq_wire.Undecodable`
    (intake drops and counts them).

    While the session is open a background task services the connections every half heartbeat when the
    loop is free (during a fit): pika sends heartbeats only when its events are processed, and JetStream
    would redeliver a delivery not acked within its ack wait (30 s) unless told it is in progress."""

    def __init__(self, sub: Any, pub: Any) -> None:
        self._sub, self._pub = sub, pub
        self.needs_keepalive = True

    async def _deliveries(self) -> AsyncIterator[Any]:
        while True:
            data = await self._sub.next()
            if data is None:
                return
            yield data

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._deliveries()

    async def reply(self, payload: dict[str, Any]) -> None:
        await self._pub.send(payload)

    async def keepalive(self) -> None:
        try:
            await self._sub.keepalive()
            conn = self._pub.pika_connection()
            if conn is not None:
                conn.process_data_events(time_limit=0)
        except Exception as e:  # a lost connection shows when the reply is published
            LOGGER.warning("servicing the broker connection during a fit failed (%s)", type(e).__name__)

    async def pump(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.keepalive()


class MQWorkerChannel(WorkerChannel):
    """Client side: work from the to-clients queue, replies to the from-clients queue. Each session is a
    fresh subscription, re-opened after any idle gap (see the module docstring)."""

    def __init__(self, settings: BrokerSettings, queue_to_clients: str, queue_from_clients: str,
                 name: str = "client") -> None:
        self.settings, self.to_clients, self.from_clients, self.name = (settings, queue_to_clients,
                                                                        queue_from_clients, name)
        self._stop = threading.Event()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stop after the delivery in hand (or once the current session's wait ends)."""
        self._stop.set()

    @asynccontextmanager
    async def session(self, idle_s: float) -> AsyncIterator[WorkerSession]:
        async with open_pub(self.settings, self.from_clients, subscribe_first=False) as pub, \
                open_sub(self.settings, self.to_clients, prefetch=1, timeout_s=max(1.0, idle_s)) as sub:
            session = _MQSession(sub, pub)
            pump = asyncio.ensure_future(session.pump(max(0.5, self.settings.heartbeat_s / 2)))
            try:
                yield session
            finally:
                pump.cancel()
                try:
                    await pump
                except (asyncio.CancelledError, Exception):
                    pass


def split_password(address: str) -> tuple[str, str]:
    """(``address`` without its password, the password or "")."""
    m = re.match(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^:/@]*):([^@/]*)@(.*)$", address)
    return (f"{m.group(1)}@{m.group(3)}", m.group(2)) if m else (address, "")


def broker_settings(cfg: EnvConfig, address: str | None = None, client: str | None = None) -> BrokerSettings:
    """Settings for mqclient. A RabbitMQ password in the address is passed as the auth token instead
    (mqclient logs addresses; an explicit SKYSCAN_BROKER_AUTH wins, as in mqclient)."""
    client = client or cfg.SKYSCAN_BROKER_CLIENT
    address = address or cfg.SKYSCAN_BROKER_ADDRESS
    auth = cfg.broker_auth()
    if client == "rabbitmq":
        address, password = split_password(address)
        auth = auth or password
    return BrokerSettings(client, address, auth, cfg.SKYSCAN_MQ_TIMEOUT_TO_CLIENTS,
                          heartbeat_s=cfg.SKYSCAN_MQ_HEARTBEAT_SEC, expiry_s=cfg.SKYSCAN_MQ_QUEUE_EXPIRY_SEC)


def make_server_transport(cfg: EnvConfig, spec: Any, startup_json: Path) -> MQServerTransport:
    """The server's broker transport and the client-startup document it will write."""
    from ..pixels import progression_str  # here, not at the top: healpy is not needed to import this module

    settings = broker_settings(cfg)
    to_clients, from_clients = queue_names(spec.instance_id)  # one server start, one set of queues
    doc = {
        "format": STARTUP_FORMAT,
        "scanner_version": __version__,
        "scan_id": spec.scan_id,
        "broker_client": settings.client,
        "broker_address": redact_address(settings.address),
        "queue_to_clients": to_clients,
        "queue_from_clients": from_clients,
        "queue_expiry_s": settings.expiry_s,  # clients declare the queues with the server's arguments
        "reco_algo": spec.reco_name,
        "reco_options": dict(spec.reco_options),
        "nsides": progression_str(spec.steps),
        "scan_key": spec.key.hex(),  # the HMAC key of every message (the file is mode 600; never logged)
        "event": native.to_dict(spec.event),
    }
    return MQServerTransport(settings, spec.instance_id, startup_json, doc)


def read_startup_json(path: Path) -> dict[str, Any]:
    """Read and check a client-startup JSON; clear one-line errors."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such client-startup JSON") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable client-startup JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != STARTUP_FORMAT:
        raise ConfigError(f"{path}: not a {STARTUP_FORMAT} document")
    for key in ("scan_id", "scan_key", "broker_client", "broker_address", "queue_to_clients",
                "queue_from_clients", "reco_algo", "event"):
        if key not in doc:
            raise ConfigError(f"{path}: missing '{key}'")
    return doc
