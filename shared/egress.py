"""Where Hato may connect on a tenant's behalf: public addresses only, unless an operator
allows a network.

A tenant names webhook URLs, and its recipients' domains name MX hosts; either could point
Hato at its own broker, database, a cloud's metadata service or anything else on the inside.
So every such target is resolved first, each address is checked (loopback, link-local,
private, shared, unique-local, multicast, unspecified, reserved, documentation ranges and the
IPv4 ones mapped into IPv6 are refused: only what ``ipaddress`` calls global passes), and the
connection goes to the address that was checked — never to a name resolved again later, so a
DNS answer that changes in between (rebinding) gains nothing.

``HATO_EGRESS_ALLOW`` lists networks an operator allows nonetheless (a webhook receiver in the
same cluster; ``127.0.0.0/8`` in the dev stack and the tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Annotated

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.settings import comma_list

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressSettings(BaseSettings):
    """Where Hato may connect for a tenant (webhook endpoints, MX hosts)."""

    model_config = SettingsConfigDict(env_prefix="HATO_EGRESS_", extra="ignore")

    allow: Annotated[list[str], NoDecode] = Field(
        [],
        description="Networks (CIDR, comma-separated) that webhooks and MX hosts may use although "
        "they are not public addresses; empty: public addresses only.",
    )

    _split = comma_list("allow")


class Forbidden(ValueError):
    """A target Hato will not connect to for a tenant; the text is safe to show the tenant."""


@dataclass(frozen=True, slots=True)
class Egress:
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: EgressSettings) -> Egress:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in settings.allow))

    def permits(self, address: Address | str) -> bool:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip.version == n.version and ip in n for n in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast

    async def resolve(self, host: str, port: int) -> list[Address]:
        """Every address of ``host``, which must all be permitted (a name with one inside
        address among public ones is refused: which one is used is not ours to choose)."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except (OSError, UnicodeError):
                raise Forbidden(f"{host} does not resolve") from None
            found = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
            if not found:
                raise Forbidden(f"{host} does not resolve")
        return self.admit(host, found)

    def admit(self, host: str, found: list[Address]) -> list[Address]:
        """``found`` (the addresses ``host`` resolved to, through whatever resolver) when
        every one is permitted; Forbidden otherwise."""
        if not found:
            raise Forbidden(f"{host} does not resolve")
        refused = [a for a in found if not self.permits(a)]
        if refused:
            raise Forbidden(f"{host} resolves to {refused[0]}, which is not a public address")
        return found

    async def check_url(self, url: str) -> list[Address]:
        """For registration: an http(s) URL whose host resolves to permitted addresses only."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise Forbidden("not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise Forbidden("only http and https URLs with a host")
        if parsed.userinfo:
            raise Forbidden("a URL may not carry a user name or password")
        return await self.resolve(parsed.host, parsed.port or _default_port(parsed.scheme))

    async def pinned(self, url: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """The request to make for ``url``: to the checked address, with the name in Host and
        in TLS (SNI and certificate check) — (URL, headers, httpx extensions)."""
        parsed = httpx.URL(url)
        addresses = await self.check_url(url)
        target = parsed.copy_with(host=str(addresses[0]))
        port = parsed.port
        host_header = parsed.host if port is None else f"{parsed.host}:{port}"
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        return target, {"Host": host_header}, extensions


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
