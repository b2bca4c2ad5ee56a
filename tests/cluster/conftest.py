"""A three-node RabbitMQ cluster of the module's own (tests/helpers/rabbit_cluster.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers.rabbit_cluster import RabbitCluster, available


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory) -> AsyncIterator[RabbitCluster]:
    reason = available()
    if reason:
        pytest.skip(f"no RabbitMQ cluster here: {reason}")
    async with RabbitCluster(tmp_path_factory.mktemp("rabbit")) as c:
        yield c
