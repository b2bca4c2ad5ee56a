"""The bounce service: delivery results become events; every event is stored."""

from __future__ import annotations

from services.bounce.events import EventWriter, events_for
from services.bounce.settings import BounceSettings
from shared import logging as hlog
from shared.broker import Broker, Delivery, Queue
from shared.errors import Permanent
from shared.runtime import Runtime
from shared.schemas import DeliveryResult, Event

log = hlog.get_logger(__name__)


class ResultHandler:
    """A delivery result → one event per recipient on the events exchange."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def handle(self, delivery: Delivery) -> None:
        result = delivery.message
        if not isinstance(result, DeliveryResult):
            raise Permanent(f"expected a delivery result, got {type(result).__name__}")
        await self.broker.emit(events_for(result))


class EventRecorder:
    """Every event published by any service → the ``events`` collection."""

    def __init__(self, writer: EventWriter) -> None:
        self.writer = writer

    async def handle(self, delivery: Delivery) -> None:
        event = delivery.message
        if not isinstance(event, Event):
            raise Permanent(f"expected an event, got {type(event).__name__}")
        await self.writer.write(event)


async def run(settings: BounceSettings) -> None:
    async with Runtime("bounce", settings) as rt:
        writer = EventWriter(
            rt.store, max_batch=settings.event_batch, max_wait=settings.event_batch_wait
        )
        await rt.broker.consume(Queue.RESULTS, ResultHandler(rt.broker).handle)
        await rt.broker.consume(Queue.EVENTS_STORE, EventRecorder(writer).handle)
        if not rt.store.events_ttl_index:
            rt.every(settings.purge_interval, rt.store.purge_events)
        rt.serving()
        log.info("ready", ops_port=rt.ops.port)
        await rt.until_stopped()
