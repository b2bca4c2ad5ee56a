"""MX resolution through a real DNS server on loopback."""

from __future__ import annotations

import pytest

from services.dispatcher.mx import MxResolver
from services.dispatcher.routes import RouteTable
from shared.egress import Egress, EgressSettings
from shared.settings import DnsSettings
from tests.helpers.dns import DnsServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def dns_server():
    server = await DnsServer().start()
    server.add("ok.test", "MX", "20 backup.ok.test.")
    server.add("ok.test", "MX", "10 mx1.ok.test.")
    server.add("ok.test", "MX", "10 mx2.ok.test.")
    server.add("mx1.ok.test", "A", "127.0.0.21")
    server.add("mx2.ok.test", "A", "127.0.0.22")
    server.add("backup.ok.test", "A", "127.0.0.23")
    server.add("nomx.test", "A", "127.0.0.24")
    server.add("null.test", "MX", "0 .")
    server.add("broken.test", "MX", "10 nowhere.broken.test.")
    server.add("broken.test", "TXT", '"x"')
    server.failing.add("flaky.test")
    yield server
    server.stop()


LOOPBACK = Egress.from_settings(EgressSettings(allow=["127.0.0.0/8"]))


def mx(server: DnsServer, routes: str = "") -> MxResolver:
    return MxResolver(
        DnsSettings(nameservers=[server.address], timeout=2),
        RouteTable.parse(routes),
        port=2525,
        egress=LOOPBACK,
    )


async def test_mx_preference_order_with_equal_preferences_shuffled(dns_server) -> None:
    """MX hosts come in preference order, equal preferences shuffled each time (RFC 5321 5.1), on
    the configured port."""
    orders = set()
    for _ in range(30):
        route = await mx(dns_server).route("ok.test")
        addresses = [t.address for t in route.targets]
        assert addresses[-1] == "127.0.0.23"  # the backup MX comes last
        orders.add(tuple(addresses[:2]))
    assert orders == {("127.0.0.21", "127.0.0.22"), ("127.0.0.22", "127.0.0.21")}
    assert route.targets[0].port == 2525


async def test_no_mx_falls_back_to_the_domains_address(dns_server) -> None:
    """A domain without MX is delivered to its own address (the implicit MX of RFC 5321 5.1)."""
    route = await mx(dns_server).route("nomx.test")
    assert [(t.host, t.address) for t in route.targets] == [("nomx.test", "127.0.0.24")]


@pytest.mark.parametrize(
    "domain, code, enhanced",
    [
        ("null.test", 556, "5.1.10"),  # RFC 7505
        ("does-not-exist.test", 550, "5.1.2"),  # NXDOMAIN
        ("flaky.test", 451, "4.4.3"),  # SERVFAIL: try later
        ("broken.test", 451, "4.4.4"),  # its MX has no address
    ],
)
async def test_what_cannot_be_routed_says_why(dns_server, domain, code, enhanced) -> None:
    """A domain that cannot be routed carries its reply: null MX 556 5.1.10, no such domain
    550 5.1.2, a DNS failure 451 4.4.3 (try later), an MX without an address 451 4.4.4."""
    route = await mx(dns_server).route(domain)
    assert route.targets == ()
    assert (route.failure.code, route.failure.enhanced) == (code, enhanced)


async def test_static_routes_override_dns(dns_server) -> None:
    """A static route wins over DNS, even over the domain's null MX."""
    route = await mx(dns_server, "null.test=127.0.0.9:26").route("null.test")
    assert [(t.address, t.port) for t in route.targets] == [("127.0.0.9", 26)]


async def test_a_tenants_own_route_comes_first(dns_server) -> None:
    """A tenant's own route for a domain comes before the operator's, which other tenants keep."""
    resolver = MxResolver(
        DnsSettings(nameservers=[dns_server.address], timeout=2),
        RouteTable.parse("ok.test=127.0.0.8:25"),
        port=2525,
        tenant_routes={"acme": RouteTable.parse("ok.test=127.0.0.7:2600")},
    )
    assert (await resolver.route("ok.test", "acme")).targets[0].address == "127.0.0.7"
    assert (await resolver.route("ok.test", "other")).targets[0].address == "127.0.0.8"


async def test_an_mx_inside_is_not_used_unless_its_network_is_allowed(dns_server) -> None:
    """A recipient's domain may not point Hato at loopback (or any non-public address): its
    mail bounces 550 5.4.4. With the network allowed (as the tests and the dev stack do), the
    same MX is used; a static route is the operator's and is used as it is."""
    settings = DnsSettings(nameservers=[dns_server.address], timeout=2)
    strict = MxResolver(settings, RouteTable.parse(""), port=2525, egress=Egress())
    route = await strict.route("ok.test")
    assert route.targets == () and route.failure is not None
    assert (route.failure.code, route.failure.enhanced) == (550, "5.4.4")
    lenient = MxResolver(settings, RouteTable.parse(""), port=2525, egress=LOOPBACK)
    assert len((await lenient.route("ok.test")).targets) == 3
    routed = MxResolver(settings, RouteTable.parse("*=127.0.0.9:2525"), egress=Egress())
    assert [t.address for t in (await routed.route("ok.test")).targets] == ["127.0.0.9"]
