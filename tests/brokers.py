"""Talking to the test brokers directly (queue clean-up, depth, publishing raw payloads), and starting
pulsar-lite (the Pulsar server of the tests: a PyPI package, see the test extras) when none answers."""

from __future__ import annotations

import asyncio
import atexit
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from conftest import NATS, RABBITMQ, reachable

from skymap_scanner.transport.mq import BrokerSettings
from skymap_scanner.transport.mq_wire import open_pub

PULSAR = ("127.0.0.1", 6650)
BROKER_ADDRESSES = {"rabbitmq": RABBITMQ, "nats": NATS, "pulsar": PULSAR}
_PULSAR_PROC: list[subprocess.Popen[bytes]] = []


def broker_address(broker: str) -> str:
    host, port = BROKER_ADDRESSES[broker]
    if broker == "rabbitmq":
        return host
    return f"{'nats' if broker == 'nats' else 'pulsar'}://{host}:{port}"


def settings(broker: str, **kw: Any) -> BrokerSettings:
    return BrokerSettings(broker, broker_address(broker), "", 60, **kw)


def start_pulsar_lite(wait_s: float = 30.0) -> bool:
    """Start pulsar-lite on 127.0.0.1:6650 unless something answers there; True if it answers. The
    process started here is stopped when the test session ends."""
    if reachable(*PULSAR, timeout_s=0.5):
        return True
    try:
        from pulsar_lite.binary_finder import find_pulsar_lite_binary
    except ImportError:
        return False
    data = Path(tempfile.mkdtemp(prefix="pulsar-lite-"))
    (data / "pulsar-lite.toml").write_text("[metrics]\nenabled = false\n")  # no HTTP listener on :8080
    log = open(data / "pulsar-lite.log", "ab")  # noqa: SIM115 - kept open for the process
    proc = subprocess.Popen([find_pulsar_lite_binary(), "--config", str(data / "pulsar-lite.toml"),
                             "--addr", f"{PULSAR[0]}:{PULSAR[1]}", "--db-path", str(data / "db")],
                            stdout=log, stderr=log, cwd=data, env={**os.environ, "RUST_LOG": "warn"})
    _PULSAR_PROC.append(proc)
    atexit.register(_stop_pulsar_lite)
    t_end = time.monotonic() + wait_s
    while time.monotonic() < t_end and proc.poll() is None:
        if reachable(*PULSAR, timeout_s=0.5):
            return True
        time.sleep(0.2)
    return False


def _stop_pulsar_lite() -> None:
    for proc in _PULSAR_PROC:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def delete_rabbitmq_queues(names: list[str]) -> None:
    import pika

    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(*RABBITMQ, connection_attempts=1))
    except Exception:  # broker gone: nothing to clean
        return
    try:
        ch = conn.channel()
        for name in names:
            ch.queue_delete(name)
    finally:
        conn.close()


async def _delete_nats_streams(names: list[str]) -> None:
    """mqclient keeps queue NAME in the JetStream stream NAME-stream."""
    import nats as nats_py

    try:
        nc = await nats_py.connect(f"nats://{NATS[0]}:{NATS[1]}", connect_timeout=2, max_reconnect_attempts=0)
    except Exception:  # broker gone: nothing to clean
        return
    try:
        js = nc.jetstream()
        for name in names:
            try:
                await js.delete_stream(f"{name}-stream")
            except Exception:  # never created
                pass
    finally:
        await nc.close()


def delete_queues(broker: str, names: list[str]) -> None:
    if broker == "rabbitmq":
        delete_rabbitmq_queues(names)
    elif broker == "nats":
        asyncio.run(_delete_nats_streams(names))
    else:
        from skymap_scanner.transport.mq_wire import delete_queues as unsubscribe

        unsubscribe(settings("pulsar"), names)


def rabbitmq_queue_depth(name: str) -> int:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters(*RABBITMQ, connection_attempts=1))
    try:
        ok = conn.channel().queue_declare(name, passive=True)
        return int(ok.method.message_count)
    finally:
        conn.close()


def rabbitmq_queue_exists(name: str) -> bool:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters(*RABBITMQ, connection_attempts=1))
    try:
        conn.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 404:
            return False
        raise
    finally:
        if conn.is_open:
            conn.close()


async def _nats_stream_exists(name: str) -> bool:
    import nats as nats_py
    from nats.js.errors import NotFoundError

    nc = await nats_py.connect(f"nats://{NATS[0]}:{NATS[1]}", connect_timeout=2, max_reconnect_attempts=0)
    try:
        await nc.jetstream().stream_info(f"{name}-stream")
        return True
    except NotFoundError:
        return False
    finally:
        await nc.close()


def queue_exists(broker: str, name: str) -> bool:
    """Whether the broker still holds queue ``name`` (RabbitMQ queue, NATS stream)."""
    if broker == "rabbitmq":
        return rabbitmq_queue_exists(name)
    if broker == "nats":
        return asyncio.run(_nats_stream_exists(name))
    raise ValueError(f"{broker} cannot tell (no admin API)")


async def _publish(broker: str, queue: str, payloads: list[Any], raw: bool) -> None:
    """Publish each payload; one the broker refuses (a RabbitMQ quorum queue can nack a publish while
    it is busy: seen once under CI) is sent again, as any client would, up to 3 tries in all."""
    left = list(payloads)
    for attempt in range(3):
        try:
            # no subscription first: the scan's server made it (pulsar-lite times out a subscribe to a
            # subscription whose consumers are waiting)
            async with open_pub(settings(broker), queue, subscribe_first=False) as pub:
                while left:
                    await (pub.send_raw(left[0]) if raw else pub.send(left[0]))
                    left.pop(0)
            return
        except Exception:
            if attempt == 2:
                raise
            await asyncio.sleep(1.0)


def publish(queue: str, payloads: list[Any], broker: str = "rabbitmq") -> None:
    """Put payloads on a queue as mqclient messages, as any client of the broker could."""
    asyncio.run(_publish(broker, queue, payloads, raw=False))


def publish_raw(queue: str, payloads: list[bytes], broker: str = "rabbitmq") -> None:
    """Put raw bytes on a queue (not mqclient messages: garbage, oversized payloads, zstd bombs)."""
    asyncio.run(_publish(broker, queue, payloads, raw=True))


def zstd_bomb(decoded_bytes: int = 1 << 30) -> bytes:
    """A small zstd frame that decompresses to ``decoded_bytes`` zero bytes (streamed: never held whole)."""
    import zstandard

    out = zstandard.ZstdCompressor(level=19).compressobj(size=decoded_bytes)
    chunk = bytes(1 << 20)
    parts = [out.compress(chunk) for _ in range(decoded_bytes >> 20)]
    parts.append(out.flush())
    return b"".join(parts)
