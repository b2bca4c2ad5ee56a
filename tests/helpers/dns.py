"""A real DNS server on loopback (UDP) answering from a table (dnspython): TXT, MX, A, AAAA;
names can be made to fail (SERVFAIL)."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from shared.testing import free_port


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.records: dict[tuple[str, str], list[str]] = {}
        self.failing: set[str] = set()
        self.transport: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def add(self, name: str, rdtype: str, value: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), rdtype), []).append(value)

    def publish(self, name: str, value: str) -> None:
        """A TXT record (split into 255-byte strings as DNS requires)."""
        chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
        self.add(name, "TXT", " ".join(f'"{c}"' for c in chunks))

    async def start(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        return self

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        for question in query.question:
            name = question.name.to_text().rstrip(".").lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            if name in self.failing:
                response.set_rcode(dns.rcode.SERVFAIL)
                continue
            values = self.records.get((name, rdtype))
            if values:
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", rdtype, *values)
                )
            elif not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
