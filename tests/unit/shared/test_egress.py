"""Where Hato may connect for a tenant: public addresses, or networks an operator allows."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.egress import Egress, EgressSettings, Forbidden

LOOPBACK = Egress.from_settings(EgressSettings(allow=["127.0.0.0/8", "::1/128"]))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fd00::1",
        "100.64.0.1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "192.0.2.1",
        "240.0.0.1",
    ],
)
def test_inside_addresses_are_refused_by_default(address: str) -> None:
    """Loopback, private, link-local (the cloud metadata address among them), shared, unspecified,
    multicast, documentation and reserved addresses, IPv4-mapped ones too, are refused unless an
    operator allows them."""
    assert not Egress().permits(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    """Public IPv4 and IPv6 addresses pass without any setting."""
    assert Egress().permits(address)


def test_an_allowed_network_passes_and_only_it() -> None:
    """An allowed network opens itself (its IPv4-mapped form too) and no other private range."""
    assert LOOPBACK.permits("127.0.0.2") and LOOPBACK.permits("::ffff:127.0.0.2")
    assert not LOOPBACK.permits("fd00::1") and not LOOPBACK.permits("10.0.0.1")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:15672/api/queues", "not a public address"),
        ("http://[::1]/", "not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("http://localhost:8080/", "not a public address"),
        ("http://0x7f000001/", "not a public address"),
        ("ftp://example.test/", "only http and https"),
        ("http://user:pw@example.test/", "user name"),
        ("http://no-such-host.invalid/", "does not resolve"),
    ],
)
async def test_urls_that_lead_inside_are_refused(url: str, why: str) -> None:
    """A webhook URL is refused, with the reason, when its host resolves or is written as an address
    inside, when it carries a user name, is not HTTP(S), or does not resolve."""
    with pytest.raises(Forbidden, match=why):
        await Egress().check_url(url)


async def test_the_request_goes_to_the_checked_address_with_the_name_in_host() -> None:
    """A real server on loopback sees the name it was called by in Host, though the
    connection went to the address that was checked."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        url, headers, extensions = await LOOPBACK.pinned(f"http://localhost:{port}/hook?x=1")
        assert url.host == "127.0.0.1" and url.path == "/hook" and url.query == b"x=1"
        async with httpx.AsyncClient() as client:
            response = await client.post(url, headers=headers, extensions=extensions)
        assert response.status_code == 204
    assert f"host: localhost:{port}".encode() in seen[0].lower()
    with pytest.raises(Forbidden):
        await Egress().pinned(f"http://localhost:{port}/hook")


def test_addresses_resolved_elsewhere_are_admitted_only_when_all_are_permitted() -> None:
    """admit() judges what another resolver found (the domain check's MTA-STS host): an inside
    address refuses the name, no address too; with loopback allowed it passes."""
    import ipaddress

    found = [ipaddress.ip_address("127.0.0.5"), ipaddress.ip_address("::1")]
    with pytest.raises(Forbidden, match=r"127\.0\.0\.5, which is not a public address"):
        Egress().admit("mta-sts.shop.example", found)
    with pytest.raises(Forbidden, match="does not resolve"):
        Egress().admit("mta-sts.shop.example", [])
    assert LOOPBACK.admit("mta-sts.shop.example", found) == found
