"""Accept throughput and latency of the SMTP and HTTP doors, measured separately.

    .venv/bin/python -m bench.accept [--messages 2000] [--concurrency 20] [--size 1024]

Starts its own ingest process (relay on a free port, HTTP on another) against the running
RabbitMQ and MongoDB-compatible server (scripts/infra.sh up), with its own database and queue
prefix; nothing consumes the sign queue, so only accepting is measured. Prints messages per
second and p50/p99 accept latency in milliseconds for each door, then removes what it made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiosmtplib
import httpx

from shared.dkim import generate_rsa, to_document
from shared.secrets import SecretBox, generate_master_key
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port

AMQP_URL = os.environ.get("HATO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MONGODB_URL = os.environ.get("HATO_MONGODB_URL", "mongodb://127.0.0.1:27017/")


def message(size: int, i: int) -> bytes:
    head = (
        f"From: bench@bench.test\r\nTo: rcpt{i}@sink.test\r\nSubject: bench {i}\r\n"
        f"Message-ID: <{i}@bench.test>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def percentile(values: list[float], p: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[p - 1]
        if len(values) > 1
        else values[0]
    )


async def smtp_load(port: int, n: int, concurrency: int, size: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for i in counter:
            data = message(size, i)
            t = time.perf_counter()
            await client.sendmail("bench@bench.test", [f"rcpt{i}@sink.test"], data)
            latencies.append((time.perf_counter() - t) * 1000)
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - start), latencies


async def http_load(port: int, key: str, n: int, concurrency: int, size: int):
    latencies: list[float] = []
    counter = iter(range(n))
    text = "x" * max(1, size - 200)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            body = {
                "from": "bench@bench.test",
                "to": [f"rcpt{i}@sink.test"],
                "subject": f"bench {i}",
                "text": text,
            }
            t = time.perf_counter()
            r = await client.post(
                "/v1/messages", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            latencies.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()

    limits = httpx.TenantLimits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
    ) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return n / (time.perf_counter() - start), latencies


async def main(n: int, concurrency: int, size: int) -> None:
    run = f"bench{int(time.time())}"
    store = Store(StoreSettings(url=MONGODB_URL, database=run))
    master = generate_master_key()
    await store.ensure_indexes()
    d = store.directory
    await d.upsert_tenant("bench", networks=["127.0.0.1/32"])
    await d.upsert_domain("bench.test", tenant="bench", verified=True)
    await d.add_dkim_key(
        "bench.test", to_document(generate_rsa("bench.test", "b"), SecretBox(master))
    )
    _, key = await d.add_api_key("bench")
    smtp_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as logs:
        stack = Stack(
            env={
                "HATO_AMQP_URL": AMQP_URL,
                "HATO_AMQP_PREFIX": run,
                "HATO_AMQP_QUEUE_EXPIRES": "60000",
                "HATO_MONGODB_URL": MONGODB_URL,
                "HATO_MONGODB_DATABASE": run,
                "HATO_MASTER_KEY": master,
                "HATO_INGEST_SMTP_PORT": str(smtp_port),
                "HATO_INGEST_HTTP_PORT": str(http_port),
                "HATO_LOG_LEVEL": "WARNING",
            },
            log_dir=Path(logs),
        )
        await stack.start("ingest")
        try:
            await smtp_load(smtp_port, min(50, n), concurrency, size)  # warm-up
            smtp_rate, smtp_lat = await smtp_load(smtp_port, n, concurrency, size)
            await http_load(http_port, key, min(50, n), concurrency, size)
            http_rate, http_lat = await http_load(http_port, key, n, concurrency, size)
        finally:
            await stack.stop_all()
            await store.client.drop_database(run)
            await store.close()
    print(f"accept: {n} messages of {size} B, {concurrency} concurrent clients, one ingest")
    print(f"{'door':<6} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for door, rate, lat in (("smtp", smtp_rate, smtp_lat), ("http", http_rate, http_lat)):
        print(f"{door:<6} {rate:>8.1f} {percentile(lat, 50):>8.2f} {percentile(lat, 99):>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    a = parser.parse_args()
    asyncio.run(main(a.messages, a.concurrency, a.size))
