"""The broker edge below :mod:`.mq`: raw deliveries, bounded decoding, queue declaration with an expiry,
heartbeats, and deleting a scan's queues.

oms-mqclient's ``Queue.open_sub`` decompresses and parses every delivery itself (and its log line does
so even before the consumer sees it), with an unbounded ``zstd.decompress``: one garbage message makes
the consumer fail and the message is requeued for ever, and a small zstd bomb costs gigabytes. So the
transport uses mqclient's per-broker ``Pub`` / ``Sub`` classes directly (subclassed here to declare the
queue with an expiry and to set the heartbeat), takes raw bytes, and decodes them itself:
:func:`decode_payload` refuses a payload over :data:`MAX_COMPRESSED_BYTES` before touching it, and
decompresses in a stream that stops at :data:`MAX_DECODED_BYTES`. A payload that fails is acknowledged
and handed on as an :class:`Undecodable` (which intake refuses as "bad": counted in the manifest).

Queues (mqclient's names: RabbitMQ queue NAME, NATS stream NAME-stream, Pulsar topic NAME):

- RabbitMQ: quorum queues, with ``x-expires`` = ``expiry_s`` if that is set (deleted by the broker once
  unused, i.e. no consumer and no re-declaration, for that long); deleted with pika at the scan's end.
- NATS JetStream: streams, with ``max_age`` = ``expiry_s`` if that is set (messages older than that are
  discarded; NATS has no expiry for an idle stream, so a crashed scan leaves an empty stream
  definition); deleted through JetStream management at the scan's end.
- ``expiry_s`` = 0 (SKYSCAN_MQ_QUEUE_EXPIRY_SEC=0) declares queues exactly as mqclient does: a consumer
  that declares them itself with stock mqclient (the EWMS pilot) is refused otherwise. A RabbitMQ queue
  that exists with other arguments (made by another version, or with another expiry: a resumed scan)
  is used as it is, with a warning, instead of failing on PRECONDITION_FAILED.
- Pulsar: mqclient's subscription ``i3-pulsar-sub`` is unsubscribed from both topics at the scan's end
  (which drops their backlog). The binary protocol has no topic deletion (that is the admin REST API,
  which pulsar-lite does not serve); a real Pulsar broker reaps a topic without subscriptions by its
  inactive-topic policy.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..errors import MessageError

if TYPE_CHECKING:
    from .mq import BrokerSettings

LOGGER = logging.getLogger(__name__)

MAX_COMPRESSED_BYTES = 8 * 1024 * 1024  # a delivery larger than this is dropped unread
MAX_DECODED_BYTES = 64 * 1024 * 1024  # decompression stops (and the delivery is dropped) past this
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PULSAR_SUBSCRIPTION = "i3-pulsar-sub"  # mqclient's one shared subscription
ADMIN_TIMEOUT_S = 5.0  # connecting / deleting queues at the scan's end
PULSAR_EXIT_JOIN_S = 5.0  # at exit, how long daemon threads may take to leave the Pulsar library (see below)


class UndecodableMessage(MessageError):
    """A delivery that is not an mqclient message (not zstd, too large, not JSON, no ``data``)."""


class Undecodable(str):
    """Handed on in place of a delivery that could not be decoded: not JSON, so intake refuses it and the
    scan counts it as a bad message. Its text says why."""


def decode_payload(payload: bytes, max_compressed: int | None = None, max_decoded: int | None = None) -> Any:
    """The ``data`` of an mqclient payload (zstd-compressed JSON ``{"headers":..., "data":...}``).

    The size is checked before decompressing, and decompression stops at ``max_decoded`` bytes (memory
    stays bounded by that, whatever the frame header claims)."""
    import zstandard

    max_compressed = max_compressed or MAX_COMPRESSED_BYTES
    max_decoded = max_decoded or MAX_DECODED_BYTES
    if not isinstance(payload, (bytes, bytearray)):
        raise UndecodableMessage(f"a payload of type {type(payload).__name__}")
    if len(payload) > max_compressed:
        raise UndecodableMessage(f"a payload of {len(payload)} bytes (over the limit of {max_compressed})")
    if payload[:4] != ZSTD_MAGIC:
        raise UndecodableMessage("a payload that is not zstd-compressed")
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(bytes(payload), read_across_frames=True)
        chunks, size = [], 0
        while True:
            chunk = reader.read(min(1 << 20, max_decoded + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_decoded:
                raise UndecodableMessage(f"a payload that decompresses to more than {max_decoded} bytes")
    except zstandard.ZstdError as e:
        raise UndecodableMessage(f"a corrupt zstd payload ({e})") from None
    try:
        doc = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UndecodableMessage(f"a payload that is not JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise UndecodableMessage("a payload without mqclient's 'data' field")
    return doc["data"]


def encode_payload(data: Any) -> bytes:
    """An mqclient payload for ``data`` (what ``QueuePubResource.send`` sends)."""
    from mqclient.broker_client_interface import Message

    return Message.serialize(data)  # type: ignore[no-any-return]


# -- per-broker Pub / Sub classes ------------------------------------------------------------------

def _rabbitmq_classes() -> tuple[type, type]:
    import pika
    from mqclient.broker_clients import rabbitmq as mq_rabbit

    class Declaring(mq_rabbit.RabbitMQ):  # type: ignore[misc]
        """Declares the queue with mqclient's arguments plus ``x-expires``; sets the heartbeat."""

        settings: BrokerSettings
        passive = False  # only check that the queue exists (a 404 if not), never create it

        def configure(self, settings: BrokerSettings) -> None:
            self.settings = settings
            p = self.parameters
            p.heartbeat = max(1, int(settings.heartbeat_s))
            p.blocked_connection_timeout = 60
            p.socket_timeout = 10
            p.stack_timeout = 15
            p.connection_attempts = 1

        def open_channel(self) -> pika.adapters.blocking_connection.BlockingChannel:
            if not self.connection:
                raise mq_rabbit.ClosingFailedException("No connection to open channel.")
            channel = self.connection.channel(self._next_channel_number)
            self._next_channel_number += 1
            if self.passive:
                channel.queue_declare(queue=self.queue, passive=True)
                return channel
            try:
                declare(channel, self.queue, self.settings)
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code != 406:  # PRECONDITION_FAILED: the queue exists with other arguments
                    raise
                LOGGER.warning("queue %s exists with other arguments than %s (declared by another version or "
                               "with another SKYSCAN_MQ_QUEUE_EXPIRY_SEC): using it as it is", self.queue,
                               rabbitmq_queue_arguments(self.settings))
                self.declared_as_is = True
                channel = self.connection.channel(self._next_channel_number)
                self._next_channel_number += 1
                channel.queue_declare(queue=self.queue, passive=True)
            return channel

    class RabbitPub(mq_rabbit.RabbitMQPub, Declaring):  # type: ignore[misc]
        pass

    class RabbitSub(mq_rabbit.RabbitMQSub, Declaring):  # type: ignore[misc]
        pass

    def declare(channel: Any, queue: str, settings: BrokerSettings) -> None:
        channel.queue_declare(queue=queue, durable=True, arguments=rabbitmq_queue_arguments(settings))

    return RabbitPub, RabbitSub


def rabbitmq_queue_arguments(settings: BrokerSettings) -> dict[str, Any]:
    """mqclient's arguments, plus ``x-expires`` if the settings ask for an expiry."""
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if settings.expiry_s > 0:
        args["x-expires"] = int(settings.expiry_s * 1000)
    return args


def _nats_classes() -> tuple[type, type]:
    import nats
    from mqclient.broker_clients import nats as mq_nats

    class Declaring(mq_nats.NATS):  # type: ignore[misc]
        """Adds the stream with ``max_age``; pings at the heartbeat period."""

        settings: BrokerSettings
        passive = False  # only check that the stream exists (NotFoundError if not), never create it

        def configure(self, settings: BrokerSettings) -> None:
            self.settings = settings

        async def connect(self) -> None:
            hb = max(1, int(self.settings.heartbeat_s))
            self._nats_client = await nats.connect(self.endpoint, ping_interval=hb, max_outstanding_pings=3,
                                                   connect_timeout=10, allow_reconnect=False)
            self.js = self._nats_client.jetstream(timeout=10)
            if self.passive:
                await self.js.stream_info(self.stream_id)
            else:
                await nats_add_stream(self.js, self.stream_id, self.subject, self.settings.expiry_s)

    class NATSPub(mq_nats.NATSPub, Declaring):  # type: ignore[misc]
        pass

    class NATSSub(mq_nats.NATSSub, Declaring):  # type: ignore[misc]
        def _from_message(self, msg: Any) -> Any:
            # mqclient's copies the message's data, which decompresses it: acking garbage would fail
            from nats.aio.msg import Msg

            return Msg(_client=self._nats_client, subject=self.subject, reply=msg.msg_id)  # type: ignore[arg-type]

        def in_progress(self, msg: Any) -> Any:
            """Tell JetStream the delivery is being worked on (restarts its ack wait)."""
            return self._from_message(msg).in_progress()

    return NATSPub, NATSSub


async def nats_add_stream(js: Any, stream: str, subject: str, max_age_s: float) -> None:
    """Add the stream with ``max_age``; a stream of this name made by an older version without it is
    updated to have it."""
    from nats.js.api import StreamConfig
    from nats.js.errors import BadRequestError

    if max_age_s <= 0:  # no expiry: exactly mqclient's declaration
        await js.add_stream(name=stream, subjects=[subject])
        return
    config = StreamConfig(name=stream, subjects=[subject], max_age=float(max_age_s))
    try:
        await js.add_stream(config)
    except BadRequestError:  # exists with another configuration
        await js.update_stream(config)


_PULSAR_CLIENTS: weakref.WeakSet[Any] = weakref.WeakSet()  # every pulsar.Client made here and not yet collected
_PULSAR_EXIT_REGISTERED = False  # _close_pulsar_clients is registered with atexit (once, on the first client)


def _pulsar_client(*args: Any, **kw: Any) -> Any:
    """A ``pulsar.Client``, closed at interpreter exit if nothing closed it before: one still owned by a
    daemon thread (a worker session cut short, a queue deletion that timed out) would otherwise outlive
    Python, and the C++ library aborts the process as it exits ("terminate called without an active
    exception", exit 134), whatever the scan's outcome."""
    import pulsar

    global _PULSAR_EXIT_REGISTERED
    if not _PULSAR_EXIT_REGISTERED:
        atexit.register(_close_pulsar_clients)
        _PULSAR_EXIT_REGISTERED = True
    client = pulsar.Client(*args, **kw)
    _PULSAR_CLIENTS.add(client)
    return client


def _close_pulsar_clients() -> None:
    """At exit: close the Pulsar clients still open, then give daemon threads a moment to leave the calls
    into the library that this interrupts. A thread still inside one when Python finalizes is ended
    there as it re-takes the GIL, and that, inside the library's C++, aborts the process."""
    clients = list(_PULSAR_CLIENTS)
    for client in clients:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closed already, or the broker is gone: nothing more to do
            pass
    if not clients:
        return
    deadline = time.monotonic() + PULSAR_EXIT_JOIN_S
    for th in threading.enumerate():
        if th is not threading.current_thread() and th.daemon and th.is_alive():
            th.join(max(0.0, deadline - time.monotonic()))


def _pulsar_classes() -> tuple[type, type]:
    import pulsar
    from mqclient.broker_clients import apachepulsar as mq_pulsar

    class Configured(mq_pulsar.Pulsar):  # type: ignore[misc]
        settings: BrokerSettings

        def configure(self, settings: BrokerSettings) -> None:
            self.settings = settings

        async def connect(self) -> None:
            # the Python client has no keep-alive setting (the C++ default of 30 s applies)
            self.client = _pulsar_client(self.address, authentication=self.auth, operation_timeout_seconds=15,
                                         connection_timeout_ms=10_000)

    class PulsarPub(mq_pulsar.PulsarPub, Configured):  # type: ignore[misc]
        subscribe_first = True

        async def connect(self) -> None:
            await Configured.connect(self)
            if self.subscribe_first:
                # a subscription first, so that messages are kept for it (as mqclient does); not for
                # the clients' replies: the server's consumer made it (and pulsar-lite times out a
                # subscribe to a subscription whose consumer is waiting in a receive)
                try:
                    self.client.subscribe(self.topic, PULSAR_SUBSCRIPTION, consumer_type=pulsar.ConsumerType.Shared,
                                          initial_position=pulsar.InitialPosition.Earliest).close()
                except pulsar.Timeout:  # pulsar-lite: consumers are waiting on it, so it exists
                    LOGGER.debug("subscribing to %s timed out: its subscription is in use", self.topic)
            self.producer = self.client.create_producer(self.topic)

    class PulsarSub(mq_pulsar.PulsarSub, Configured):  # type: ignore[misc]
        pass

    return PulsarPub, PulsarSub


_CLASSES: dict[str, tuple[type, type]] = {}
_CLASSES_LOCK = threading.Lock()


def classes(client: str) -> tuple[type, type]:
    """(Pub class, Sub class) for broker ``client``."""
    with _CLASSES_LOCK:
        if client not in _CLASSES:
            make = {"rabbitmq": _rabbitmq_classes, "nats": _nats_classes, "pulsar": _pulsar_classes}.get(client)
            if make is None:
                raise ValueError(f"unknown broker client {client!r}")
            _CLASSES[client] = make()
        return _CLASSES[client]


def _make(settings: BrokerSettings, name: str, sub: bool, prefetch: int, subscribe_first: bool = True,
          passive: bool = False) -> Any:
    pub_cls, sub_cls = classes(settings.client)
    if settings.client == "rabbitmq":
        q = sub_cls(settings.address, name, settings.auth, prefetch) if sub else pub_cls(settings.address, name,
                                                                                           settings.auth)
    elif settings.client == "nats":
        args = (settings.address, f"{name}-stream", f"{name}-subject")
        q = sub_cls(*args, prefetch) if sub else pub_cls(*args)
    else:
        q = (sub_cls(settings.address, name, PULSAR_SUBSCRIPTION, settings.auth, prefetch) if sub
             else pub_cls(settings.address, name, settings.auth))
    q.configure(settings)
    q.passive = passive
    if not sub:
        q.subscribe_first = subscribe_first
    return q


async def _connect(q: Any, name: str) -> None:
    """``q.connect()``; if it fails half-way (connected, then a declaration or a subscription refused),
    what it opened is closed before the error goes on (a Pulsar client left open aborts the process at exit)."""
    try:
        await q.connect()
    except BaseException:
        try:
            await q.close()
        except Exception as e:  # noqa: BLE001 - partly open: close what can be closed
            LOGGER.debug("closing a failed connection to %s: %s", name, e)
            client = getattr(q, "client", None)
            if client is not None and hasattr(client, "close"):
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
        raise


@asynccontextmanager
async def open_pub(settings: BrokerSettings, name: str, subscribe_first: bool = True,
                   passive: bool = False) -> AsyncIterator[RawPub]:
    """A connected publisher to queue ``name``. Pulsar keeps messages only for existing subscriptions:
    ``subscribe_first`` makes sure the scan's exists first (the server's publisher needs it, the clients'
    replies go to a topic the server is subscribed to). ``passive``: fail if the queue does not exist
    (RabbitMQ, NATS) instead of creating it."""
    q = _make(settings, name, sub=False, prefetch=1, subscribe_first=subscribe_first, passive=passive)
    await _connect(q, name)
    try:
        yield RawPub(q)
    finally:
        try:
            await q.close()
        except Exception as e:  # a connection already gone
            LOGGER.debug("closing the publisher of %s: %s", name, e)


async def queue_missing(settings: BrokerSettings, name: str) -> bool:
    """True if the broker says queue ``name`` does not exist (RabbitMQ 404, NATS stream not found);
    False if it exists, if the broker cannot be asked (Pulsar creates topics on use), or on any other
    error (unreachable: the caller's own retries deal with that)."""
    if settings.client not in ("rabbitmq", "nats"):
        return False
    try:
        async with open_pub(settings, name, subscribe_first=False, passive=True):
            return False
    except Exception as e:
        return _is_not_found(e)


def _is_not_found(e: BaseException | None) -> bool:
    while e is not None:
        if getattr(e, "reply_code", None) == 404 or type(e).__name__ == "NotFoundError":
            return True
        e = e.__cause__ or e.__context__
    return False


class RawPub:
    def __init__(self, q: Any) -> None:
        self.q = q

    async def send(self, data: Any) -> None:
        """Send ``data`` as an mqclient message."""
        await self.send_raw(encode_payload(data))

    async def send_raw(self, payload: bytes) -> None:
        """Send bytes as they are (tests: garbage, bombs)."""
        await self.q.send_message(payload, retries=2, retry_delay=1.0)

    def pika_connection(self) -> Any:
        return getattr(self.q, "connection", None)

    def refresh_declaration(self) -> None:
        """Declare the queue again (RabbitMQ counts that as use: the queue's expiry starts over)."""
        channel = getattr(self.q, "channel", None)
        if channel is not None and not getattr(self.q, "declared_as_is", False):
            channel.queue_declare(queue=self.q.queue, durable=True,
                                  arguments=rabbitmq_queue_arguments(self.q.settings))


class RawSub:
    """Raw deliveries from one queue. :meth:`next` acknowledges the delivery it handed out before (if any)
    and returns the next one's data, an :class:`Undecodable` (the delivery was already acknowledged), or
    None after ``timeout_s`` without a delivery. Leaving :func:`open_sub` with an exception gives the
    current delivery back to the broker; leaving it normally acknowledges it."""

    def __init__(self, q: Any, timeout_s: float, max_compressed: int | None, max_decoded: int | None) -> None:
        self.q, self.timeout_ms = q, max(1, int(timeout_s * 1000))
        self.max_compressed, self.max_decoded = max_compressed, max_decoded
        self.current: Any = None  # the mqclient Message handed out and not yet acknowledged
        self.dropped = 0

    async def ack_current(self) -> None:
        msg, self.current = self.current, None
        if msg is not None:
            await self.q.ack_message(msg, retries=1, retry_delay=1.0)

    async def nack_current(self) -> None:
        msg, self.current = self.current, None
        if msg is not None:
            await self.q.reject_message(msg, retries=1, retry_delay=1.0)

    async def next(self) -> Any:
        await self.ack_current()
        msg = await self.q.get_message(self.timeout_ms, retries=1, retry_delay=1.0)
        if msg is None:
            return None
        try:
            data = decode_payload(msg.payload, self.max_compressed, self.max_decoded)
        except UndecodableMessage as e:
            self.dropped += 1
            await self.q.ack_message(msg, retries=1, retry_delay=1.0)  # never requeued
            return Undecodable(f"undecodable: {e}")
        self.current = msg
        return data

    def pika_connection(self) -> Any:
        return getattr(self.q, "connection", None)

    async def keepalive(self) -> None:
        """Service the connection during a long piece of work (pika heartbeats; NATS: the current
        delivery is in progress, so JetStream does not redeliver it when its ack wait runs out)."""
        conn = self.pika_connection()
        if conn is not None and hasattr(conn, "process_data_events"):
            conn.process_data_events(time_limit=0)
        if self.current is not None and hasattr(self.q, "in_progress"):
            await self.q.in_progress(self.current)


@asynccontextmanager
async def open_sub(settings: BrokerSettings, name: str, prefetch: int, timeout_s: float,
                   max_compressed: int | None = None, max_decoded: int | None = None) -> AsyncIterator[RawSub]:
    """A connected subscription to queue ``name`` (see :class:`RawSub`); the size limits default to
    :data:`MAX_COMPRESSED_BYTES` and :data:`MAX_DECODED_BYTES`."""
    q = _make(settings, name, sub=True, prefetch=prefetch)
    await _connect(q, name)
    sub = RawSub(q, timeout_s, max_compressed, max_decoded)
    try:
        yield sub
    except BaseException:
        try:
            await sub.nack_current()
        except Exception as e:  # the connection is gone: the broker gives it back by itself
            LOGGER.debug("giving back a delivery on %s: %s", name, e)
        raise
    else:
        await sub.ack_current()
    finally:
        try:
            await q.close()
        except Exception as e:
            LOGGER.debug("closing the subscription of %s: %s", name, e)


# -- deleting a scan's queues ---------------------------------------------------------------------

def delete_queues(settings: BrokerSettings, names: list[str], timeout_s: float = ADMIN_TIMEOUT_S,
                  wait_unused_s: float = 0.0) -> list[str]:
    """Delete queues ``names`` (RabbitMQ queues, NATS streams, Pulsar: unsubscribe) within about
    ``timeout_s`` + ``wait_unused_s``; never raises, never blocks longer (the work runs in a daemon
    thread). Returns notes on what could not be deleted.

    RabbitMQ: queues that still have consumers are given up to ``wait_unused_s`` to lose them (a consumer
    that declares the queue itself, such as the EWMS pilot, fails when it is deleted under it: the pilot
    stops once it has had no message for its own idle time), then deleted all the same."""
    notes: list[str] = []

    def run() -> None:
        try:
            if settings.client == "rabbitmq":
                _delete_rabbitmq(settings, names, timeout_s, wait_unused_s)
            elif settings.client == "nats":
                asyncio.run(asyncio.wait_for(_delete_nats(settings, names), timeout_s))
            else:
                _unsubscribe_pulsar(settings, names, timeout_s)
        except BaseException as e:  # noqa: BLE001 - a daemon thread reports, never raises
            notes.append(f"{type(e).__name__}: {e}")

    th = threading.Thread(target=run, name="delete-queues", daemon=True)
    th.start()
    th.join(timeout_s + wait_unused_s + 1.0)
    if th.is_alive():
        notes.append(f"no answer within {timeout_s:.0f} s")
    return notes


def _delete_rabbitmq(settings: BrokerSettings, names: list[str], timeout_s: float, wait_unused_s: float = 0.0) -> None:
    import time

    import pika
    from mqclient.broker_clients.rabbitmq import _get_credentials, _parse_url

    parts, user, password = _parse_url(settings.address)
    params: dict[str, Any] = {k: v for k, v in parts.items() if k != "scheme"}
    creds = _get_credentials(user, password, settings.auth)
    if creds is not None:
        params["credentials"] = creds
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        **params, connection_attempts=1, socket_timeout=timeout_s, stack_timeout=timeout_s,
        blocked_connection_timeout=timeout_s))
    try:
        # quorum queues refuse queue.delete with if-unused: the consumer count is polled instead
        t_end = time.monotonic() + wait_unused_s
        while time.monotonic() < t_end and _rabbitmq_consumers(conn, names) > 0:
            conn.sleep(0.25)
        channel = conn.channel()
        for name in names:
            channel.queue_delete(queue=name)
    finally:
        if conn.is_open:
            conn.close()


def _rabbitmq_consumers(conn: Any, names: list[str]) -> int:
    """Consumers on these queues (a queue that does not exist has none)."""
    import pika

    n = 0
    for name in names:
        try:
            n += conn.channel().queue_declare(queue=name, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker as e:  # the broker closes the channel
            if e.reply_code != 404:
                raise
    return n


async def _delete_nats(settings: BrokerSettings, names: list[str]) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(settings.address, connect_timeout=ADMIN_TIMEOUT_S, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=ADMIN_TIMEOUT_S)
        for name in names:
            try:
                await js.delete_stream(f"{name}-stream")
            except NotFoundError:
                pass
    finally:
        await nc.close()


def _unsubscribe_pulsar(settings: BrokerSettings, names: list[str], timeout_s: float) -> None:
    import pulsar

    address = settings.address if settings.address.startswith("pulsar") else f"pulsar://{settings.address}"
    auth = pulsar.AuthenticationToken(settings.auth) if settings.auth else None
    client = _pulsar_client(address, authentication=auth, operation_timeout_seconds=max(1, int(timeout_s)),
                            connection_timeout_ms=int(timeout_s * 1000))
    try:
        for name in names:
            consumer = client.subscribe(name, PULSAR_SUBSCRIPTION, consumer_type=pulsar.ConsumerType.Shared)
            consumer.unsubscribe()
    finally:
        client.close()
