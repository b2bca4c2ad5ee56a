"""A sending domain's DNS zone that passes every domain health check, for the loopback DNS
server (``tests/helpers/dns.py``); tests break one record at a time."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.dkim import RETIRED, status, txt_record_name, txt_record_value
from shared.domain_health import Member
from shared.settings import DnsSettings
from shared.testing import free_port
from tests.helpers.dns import DnsServer
from tests.helpers.tls import client_context, make_certificate

POOL = (Member("127.0.0.2", "out1.hato.localhost"), Member("127.0.0.3", "out2.hato.localhost"))
DNS_SETTINGS = {
    "spf_include": "spf.hato.localhost",
    "return_path_label": "bounces",
    "return_path_host": "bounces.hato.localhost",
    "bounce_mx": "mx.hato.localhost",
}


def dns_settings(server: DnsServer) -> DnsSettings:
    return DnsSettings(nameservers=[server.address], timeout=2, **DNS_SETTINGS)


def healthy(server: DnsServer, domain: dict[str, Any], members: Sequence[Member] = POOL) -> None:
    """Publish what makes ``domain`` (a domains document) healthy when Hato sends from
    ``members``: SPF through Hato's include, the DKIM keys, DMARC p=reject, the return path a
    CNAME of Hato's host (its MX the bounce listener, its SPF the pool IPs), FCrDNS of each
    IP, and (the domain receives mail) MTA-STS and TLS-RPT records."""
    name = domain["_id"]
    ips = " ".join(f"ip4:{m.ip}" for m in members)
    server.publish("spf.hato.localhost", f"v=spf1 {ips} -all")
    server.publish(name, "v=spf1 include:spf.hato.localhost -all")
    for key in domain.get("dkim", []):
        if status(key) != RETIRED:
            server.publish(txt_record_name(name, key["selector"]), txt_record_value(key))
    server.publish(f"_dmarc.{name}", f"v=DMARC1; p=reject; rua=mailto:dmarc@{name}")
    server.add(f"bounces.{name}", "CNAME", "bounces.hato.localhost.")
    server.add("bounces.hato.localhost", "MX", "10 mx.hato.localhost.")
    server.publish("bounces.hato.localhost", f"v=spf1 {ips} -all")
    server.add("mx.hato.localhost", "A", "127.0.0.1")
    for m in members:
        server.reverse(m.ip, m.helo or "")
        server.add(m.helo or "", "A", m.ip)
    server.add(name, "MX", f"10 mx.{name}.")
    server.add(f"mx.{name}", "A", "127.0.0.4")
    server.publish(f"_mta-sts.{name}", "v=STSv1; id=20261203000000")
    server.publish(f"_smtp._tls.{name}", f"v=TLSRPTv1; rua=mailto:tls@{name}")
    server.add(f"mta-sts.{name}", "A", "127.0.0.5")


def sts_policy(domain: str, mode: str = "enforce") -> str:
    return f"version: STSv1\nmode: {mode}\nmx: mx.{domain}\nmax_age: 604800\n"


class PolicyServer:
    """An HTTPS server on loopback serving an MTA-STS policy file (or ``status`` without one)
    with a certificate for ``mta-sts.<domain>``; ``tls`` trusts it."""

    def __init__(self, folder: Path, domain: str, host: str = "127.0.0.5") -> None:
        self.host = host
        self.port = free_port(host)
        self.policy = sts_policy(domain)
        self.status = 200
        self.requests: list[str] = []
        cert, key = make_certificate(folder, f"mta-sts.{domain}")
        self.tls = client_context(cert)
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_tls.load_cert_chain(cert, key)
        self._server: asyncio.Server | None = None

    async def start(self) -> PolicyServer:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self._server_tls
        )
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.decode("latin-1"))
            body = self.policy.encode() if self.status == 200 else b""
            writer.write(
                f"HTTP/1.1 {self.status} X\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
