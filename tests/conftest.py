"""Fixtures shared by every test: where the real servers are, unique names per test, and a
provisioned tenant."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from shared import dkim
from shared.secrets import SecretBox, generate_master_key
from shared.settings import BrokerSettings, StoreSettings
from shared.store import Store

AMQP_URL = os.environ.get("HATO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MONGODB_URL = os.environ.get("HATO_MONGODB_URL", "mongodb://127.0.0.1:27017/")

TENANT = "acme"
DOMAIN = "shop.test"
SELECTOR = "s1"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def broker_settings() -> BrokerSettings:
    return BrokerSettings(
        url=AMQP_URL, prefix=unique("t"), error_backoff=0.2, queue_expires=600_000
    )


@pytest.fixture
def store_settings() -> StoreSettings:
    return StoreSettings(url=MONGODB_URL, database=unique("t"), timeout=3)


@pytest.fixture
async def store(store_settings: StoreSettings) -> AsyncIterator[Store]:
    s = Store(store_settings)
    await s.ensure_indexes()
    yield s
    await s.client.drop_database(store_settings.database)
    await s.close()


@pytest.fixture(scope="session")
def master_key() -> str:
    return generate_master_key()


@pytest.fixture(scope="session")
def dkim_key() -> dkim.DkimKey:
    return dkim.generate_rsa(DOMAIN, SELECTOR)


async def provision(store: Store, master_key: str, key: dkim.DkimKey) -> None:
    """Tenant ``acme`` relaying from 127.0.0.1 and owning ``shop.test`` with a DKIM key."""
    await store.directory.upsert_tenant(TENANT, pool="default", networks=["127.0.0.1/32"])
    await store.directory.upsert_domain(DOMAIN, tenant=TENANT, verified=True)
    await store.directory.add_dkim_key(DOMAIN, dkim.to_document(key, SecretBox(master_key)))
