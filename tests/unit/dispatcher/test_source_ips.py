"""Which source IPs a dispatcher instance owns: its own list, or its node's entry in the
per-node map the Kubernetes manifests give it."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from services.dispatcher.service import check_bindable
from services.dispatcher.settings import DispatcherSettings
from shared.errors import ConfigError

IP_MAP = {"mx-node-a": ["203.0.113.10", "203.0.113.11"], "mx-node-b": ["2001:db8::25"]}


def test_without_a_map_an_instance_owns_its_source_ips(monkeypatch) -> None:
    """HATO_DISPATCHER_SOURCE_IPS stays what an instance sends from when no map is set."""
    monkeypatch.setenv("HATO_DISPATCHER_SOURCE_IPS", "127.0.0.2,127.0.0.3")
    monkeypatch.setenv("HATO_DISPATCHER_NODE", "mx-node-a")
    assert DispatcherSettings().own_source_ips() == ["127.0.0.2", "127.0.0.3"]


def test_with_a_map_an_instance_owns_the_addresses_of_its_node(monkeypatch) -> None:
    """The map (JSON, as the ConfigMap sets it) wins over source_ips; the pod's node picks
    the entry, and the pod's name stays the instance name of its heartbeats."""
    monkeypatch.setenv("HATO_DISPATCHER_SOURCE_IPS_BY_NODE", json.dumps(IP_MAP))
    monkeypatch.setenv("HATO_DISPATCHER_SOURCE_IPS", "10.1.2.3")  # the pod IP of the base
    monkeypatch.setenv("HATO_DISPATCHER_NODE", "mx-node-a")
    monkeypatch.setenv("HATO_DISPATCHER_INSTANCE", "dispatcher-1")
    settings = DispatcherSettings()
    assert settings.own_source_ips() == ["203.0.113.10", "203.0.113.11"]
    assert settings.instance == "dispatcher-1"
    monkeypatch.setenv("HATO_DISPATCHER_NODE", "mx-node-b")
    assert DispatcherSettings().own_source_ips() == ["2001:db8::25"]


def test_a_node_missing_from_the_map_is_a_configuration_error() -> None:
    """A pod on a node the map does not list stops with a message naming the node."""
    settings = DispatcherSettings(source_ips_by_node=IP_MAP, node="worker-7")
    with pytest.raises(ConfigError, match="node worker-7 has no source IPs"):
        settings.own_source_ips()


def test_a_map_without_the_node_name_is_a_configuration_error() -> None:
    """The map is useless without HATO_DISPATCHER_NODE; the error says where it comes from."""
    with pytest.raises(ConfigError, match=r"spec\.nodeName"):
        DispatcherSettings(source_ips_by_node=IP_MAP).own_source_ips()


def test_a_map_entry_that_is_no_address_is_refused_at_load() -> None:
    """A typo in the ConfigMap fails when the settings are read, naming the node."""
    with pytest.raises(ValidationError, match=re.escape("mx-node-a: '203.0.113' is not an IP")):
        DispatcherSettings(source_ips_by_node={"mx-node-a": ["203.0.113"]})


def test_addresses_the_host_does_not_carry_are_refused() -> None:
    """A pod scheduled where its addresses are not bound stops instead of announcing them."""
    check_bindable(["127.0.0.1", "127.0.0.9"])  # all of 127/8 is this host's
    with pytest.raises(ConfigError, match=re.escape("198.51.100.7 is not an address of this host")):
        check_bindable(["127.0.0.1", "198.51.100.7"])
