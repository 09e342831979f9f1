"""Talking to the test brokers directly (queue clean-up, depth, publishing raw payloads)."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import NATS, RABBITMQ


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
    else:
        asyncio.run(_delete_nats_streams(names))


def rabbitmq_queue_depth(name: str) -> int:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters(*RABBITMQ, connection_attempts=1))
    try:
        ok = conn.channel().queue_declare(name, passive=True)
        return int(ok.method.message_count)
    finally:
        conn.close()


async def _publish(broker: str, address: str, queue: str, payloads: list[Any]) -> None:
    """Publish each payload; one the broker refuses (a RabbitMQ quorum queue can nack a publish while
    it is busy: seen once under CI) is sent again, as any client would, up to 3 tries in all."""
    from mqclient import Queue

    left = list(payloads)
    for attempt in range(3):
        try:
            q = Queue(broker, address=address, name=queue, timeout=5)
            async with q.open_pub() as pub:
                while left:
                    await pub.send(left[0])
                    left.pop(0)
            return
        except Exception:
            if attempt == 2:
                raise
            await asyncio.sleep(1.0)


def publish(queue: str, payloads: list[Any], broker: str = "rabbitmq") -> None:
    """Put raw payloads on a queue, as any client of the broker could."""
    address = RABBITMQ[0] if broker == "rabbitmq" else NATS[0]
    asyncio.run(_publish(broker, address, queue, payloads))
