"""Stopping drains within one shutdown grace: ingest's own drain and the broker's share it."""

from __future__ import annotations

import asyncio
import time

from services.ingest.accept import Acceptor
from services.ingest.service import stop_doors
from services.ingest.settings import IngestSettings
from shared.runtime import Runtime

GRACE = 0.6


class FakeListener:
    """An SMTP listener: stopping it is instant."""

    stopped = False

    async def stop(self) -> None:
        self.stopped = True


class FakeHttp:
    """The HTTP door: stopping it waits for a request that outlasts the grace."""

    async def stop(self) -> None:
        await asyncio.sleep(10 * GRACE)


def runtime() -> Runtime:
    return Runtime("ingest", IngestSettings(shutdown_grace=GRACE, ops_port=0))


async def never() -> None:
    await asyncio.Event().wait()


async def test_grace_left_counts_down_from_the_stop_request() -> None:
    """Before a stop all of the grace is left; after it, what the clock has not used."""
    rt = runtime()
    assert rt.grace_left() == GRACE
    rt.request_stop()
    await asyncio.sleep(GRACE / 3)
    assert 0 < rt.grace_left() <= GRACE * 2 / 3
    await asyncio.sleep(GRACE)
    assert rt.grace_left() == 0
    rt.request_stop()  # a second request does not start the clock again
    assert rt.grace_left() == 0


async def test_ingest_waits_its_shutdown_grace_once_not_twice() -> None:
    """Doors, accepts in progress and the broker's in-flight handlers all stuck: the whole
    drain ends after one grace (it took two before: acceptor, then broker)."""
    rt = runtime()
    acceptor = Acceptor(rt.store, rt.broker)
    accept = asyncio.create_task(never())
    handler = asyncio.create_task(never())
    acceptor._in_flight.add(accept)
    rt.broker._in_flight.add(handler)
    listener = FakeListener()
    started = time.monotonic()
    rt.request_stop()  # SIGTERM
    await stop_doors(rt, [listener], FakeHttp(), acceptor)
    await rt.__aexit__(None, None, None)
    elapsed = time.monotonic() - started
    assert listener.stopped
    assert GRACE * 0.9 <= elapsed < GRACE * 1.5, elapsed
    assert handler.cancelled()  # unacked: the broker redelivers it
    accept.cancel()
