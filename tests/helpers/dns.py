"""A real DNS server on loopback (UDP) answering from a table (dnspython): TXT, MX, A, AAAA,
PTR, CNAME (followed within the table, as an authoritative server does); names can be made
to fail (SERVFAIL)."""

from __future__ import annotations

import asyncio

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset

from shared.testing import free_port

MAX_CHAIN = 8  # CNAMEs followed in one answer


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

    def reverse(self, ip: str, host: str) -> None:
        """A PTR record of ``ip`` naming ``host``."""
        name = dns.reversename.from_address(ip).to_text()
        self.add(name, "PTR", host.rstrip(".") + ".")

    def remove(self, name: str, rdtype: str) -> None:
        self.records.pop((name.lower().rstrip("."), rdtype), None)

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
            self._answer(response, question.name, dns.rdatatype.to_text(question.rdtype))
        self.transport.sendto(response.to_wire(), addr)

    def _answer(self, response: dns.message.Message, qname: dns.name.Name, rdtype: str) -> None:
        for _ in range(MAX_CHAIN):
            name = qname.to_text().rstrip(".").lower()
            if name in self.failing:
                response.set_rcode(dns.rcode.SERVFAIL)
                return
            values = self.records.get((name, rdtype))
            if values:
                response.answer.append(dns.rrset.from_text(qname, 60, "IN", rdtype, *values))
                return
            alias = self.records.get((name, "CNAME")) if rdtype != "CNAME" else None
            if not alias:
                if not response.answer and not any(n == name for n, _ in self.records):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return
            response.answer.append(dns.rrset.from_text(qname, 60, "IN", "CNAME", alias[0]))
            qname = dns.name.from_text(alias[0])

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
