"""A real DNS server on loopback (UDP) answering TXT queries from a dict (dnspython)."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.helpers.net import free_port


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.txt: dict[str, list[str]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def publish(self, name: str, value: str) -> None:
        self.txt.setdefault(name.lower().rstrip("."), []).append(value)

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
            values = self.txt.get(name)
            if question.rdtype == dns.rdatatype.TXT and values:
                texts = []
                for v in values:  # a TXT string holds at most 255 bytes: split long values
                    chunks = [v[i : i + 255] for i in range(0, len(v), 255)]
                    texts.append(" ".join(f'"{c}"' for c in chunks))
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", *texts))
            elif not values:
                response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()
