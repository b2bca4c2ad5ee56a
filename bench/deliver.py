"""Delivery throughput of the dispatcher's SMTP client to a local sink, with and without
connection reuse, with 0 ms and 50 ms of sink latency per message.

    .venv/bin/python -m bench.deliver [--messages 1000] [--concurrency 20] [--size 2048]

The sink runs in its own process (aiosmtpd, answering 250 after the latency); the client is
the dispatcher's SmtpClient sending from 127.0.0.1 with the settings the service uses. Prints
messages per second for each combination.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from services.dispatcher.mx import MxHost
from services.dispatcher.pools import Member
from services.dispatcher.smtp_client import SmtpClient
from shared.ids import new_id
from shared.schemas import Recipient
from shared.testing import free_port

SINK = """
import asyncio, sys
from aiosmtpd.smtp import SMTP
delay = float(sys.argv[2])
class H:
    async def handle_DATA(self, server, session, envelope):
        if delay:
            await asyncio.sleep(delay)
        return "250 2.0.0 Ok"
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SMTP(H(), loop=loop), "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def message(size: int) -> bytes:
    head = b"From: bench@shop.test\r\nTo: r@sink.test\r\nSubject: bench\r\n\r\n"
    return head + (b"x" * 76 + b"\r\n") * max(1, (size - len(head)) // 78)


async def run(n: int, concurrency: int, size: int, delay: float, reuse: bool) -> float:
    port = free_port()
    sink = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SINK, str(port), str(delay), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert sink.stdout is not None and (await sink.stdout.readline()).strip() == b"ready"
        client = SmtpClient(connect_timeout=10, reuse=reuse, max_messages=1000)
        target = MxHost("sink.test", "127.0.0.1", port)
        member = Member("127.0.0.1", "bench.hato.test")
        body = message(size)
        counter = iter(range(n))

        async def worker() -> None:
            for _ in counter:
                attempt = await client.send(
                    target,
                    member,
                    "sink.test",
                    "bench@shop.test",
                    [Recipient(id=new_id(), address="r@sink.test")],
                    body,
                )
                assert attempt.results[0].reply.code == 250, attempt.results[0].reply

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        await client.close_idle(all_=True)
        return n / elapsed
    finally:
        sink.terminate()
        await sink.wait()


async def main(n: int, concurrency: int, size: int) -> None:
    print(f"delivery: {n} messages of {size} B, {concurrency} concurrent transactions")
    print(f"{'sink latency':>12} {'reuse':>6} {'msg/s':>8}")
    for delay in (0.0, 0.05):
        for reuse in (True, False):
            rate = await run(n, concurrency, size, delay, reuse)
            print(f"{delay * 1000:>10.0f}ms {'yes' if reuse else 'no':>6} {rate:>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048)
    a = parser.parse_args()
    asyncio.run(main(a.messages, a.concurrency, a.size))
