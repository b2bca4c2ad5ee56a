"""MongoDB, in one place: the client, the database, and the repositories that own its
collections, each with its indexes and its queries.

Written for the features MongoDB and FerretDB 1.x both have: no transactions,
no change streams, and no TTL indexes on FerretDB (``ensure_indexes`` falls back
to ``store.events.purge_expired`` run periodically by the bounce service). Each
collection's fields have one owning service:

==============  =====================  ================================================
collection      owner                  what
==============  =====================  ================================================
tenants ...     hato admin command     see shared/directory.py
rates           ingest, dispatcher     counts per period: a tenant's messages this hour
                                       (``store.hourly``), a source IP's today
                                       (shared/rates.py)
suppressions    bounce, admin          addresses never mailed, read by ingest (and
                                       ``soft_bounces``); their repository is
                                       ``store.suppressions`` (shared/suppressions.py)
messages        ingest (+signer marks)  one document per accepted submission
recipients      ingest → dispatcher    one per envelope recipient: status, attempts, reply;
                                       with messages, the repository ``store.messages``
                                       (shared/messages.py)
events          every service          append-only timeline, kept ``events_ttl_days``; its
                                       repository is ``store.events`` (shared/events.py)
queue_controls  admin, dispatcher      suspensions, moves, reply rules' actions (see
                                       shared/queue_control.py)
==============  =====================  ================================================
"""

from __future__ import annotations

from typing import Any

import pymongo.errors
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from shared.directory import Directory, Idempotency, Pools
from shared.events import Events
from shared.messages import Messages
from shared.queue_control import Controls, Waiting
from shared.rates import HourlyCounts
from shared.schedule import Schedules
from shared.settings import StoreSettings
from shared.suppressions import Suppressions
from shared.webhooks import Webhooks


class Store:
    """Hato's state in MongoDB (or a MongoDB-compatible server): the client and the
    repositories, built on one database."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        ms = int(settings.timeout * 1000)
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.url,
            serverSelectionTimeoutMS=ms,
            connectTimeoutMS=ms,
            socketTimeoutMS=ms * 2,
            tz_aware=True,
            appname="hato",
        )
        self.db: AsyncDatabase[dict[str, Any]] = self.client[settings.database]
        self.events = Events(
            self.db, batch_wait=settings.batch_wait, ttl_days=settings.events_ttl_days
        )
        self.messages = Messages(self.db, self.events, batch_wait=settings.batch_wait)
        self.directory = Directory(self.db)
        self.hourly = HourlyCounts(self.db)
        self.suppressions = Suppressions(self.db, batch_wait=settings.batch_wait)
        self.idempotency = Idempotency(self.db)
        self.pools = Pools(self.db)
        self.webhooks = Webhooks(self.db)
        self.schedules = Schedules(self.db)
        self.controls = Controls(self.db)
        self.waiting = Waiting(self.db)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> bool:
        try:
            await self.client.admin.command("ping")
        except pymongo.errors.PyMongoError:
            return False
        return True

    async def ensure_indexes(self) -> None:
        """Create every index (idempotent); called by each service at start-up."""
        await self.messages.ensure_indexes()
        await self.events.ensure_indexes()
        await self.directory.ensure_indexes()
        await self.suppressions.ensure_indexes()
        await self.webhooks.ensure_indexes()
        await self.schedules.ensure_indexes()
        await self.controls.ensure_indexes()
