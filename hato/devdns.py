"""The dev-mode DNS server: authoritative for whatever ``hato dev dns`` published, on loopback,
so that domain verification, DKIM activation and rotation can be tried end to end on a
machine where nobody can publish real records.

The records live in a JSON zone file (``{"name": {"TXT": ["value", ...], ...}}``) that the
command writes and the server reads again whenever it changes. The server answers over UDP
and TCP (an RSA-2048 DKIM record with the SPF record beside it outgrows 512 bytes; a
truncated UDP answer sends resolvers to TCP), with the AA flag set, NXDOMAIN for names it
has nothing at or under, and CNAMEs followed within the zone. dnspython parses and writes
the wire format; only the lookup table is ours (no DNS server library worth a dependency
does less than a whole authoritative server with zone files of its own format).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

TTL = 60
TYPES = ("TXT", "CNAME", "MX", "A", "AAAA")
UDP_LIMIT = 512  # RFC 1035 4.2.1, unless the query's EDNS says more


def _name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def txt_rdata(value: str) -> str:
    """A TXT value in presentation form: strings of at most 255 bytes, quoted and escaped."""
    raw = value.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    quoted = []
    for chunk in chunks:
        text = chunk.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"')
        quoted.append(f'"{text}"')
    return " ".join(quoted)


class Zone:
    """The records, in a JSON file written atomically; re-read when its mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._records: dict[str, dict[str, list[str]]] = {}

    def records(self) -> dict[str, dict[str, list[str]]]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._records = None, {}
            return self._records
        if mtime != self._mtime:
            self._records = json.loads(self.path.read_text() or "{}")
            self._mtime = mtime
        return self._records

    def _write(self, records: dict[str, dict[str, list[str]]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def set(self, name: str, rdtype: str, values: Iterable[str]) -> None:
        """Publish ``values`` as the whole ``rdtype`` record set of ``name``."""
        rdtype = rdtype.upper()
        if rdtype not in TYPES:
            raise ValueError(f"record type {rdtype} is not served (only {', '.join(TYPES)})")
        values = list(values)
        for value in values:  # refuse what would not parse now, not at query time
            text = txt_rdata(value) if rdtype == "TXT" else value
            dns.rrset.from_text(_name(name) + ".", TTL, "IN", rdtype, text)
        records = dict(self.records())
        records.setdefault(_name(name), {})[rdtype] = values
        self._write(records)

    def remove(self, name: str, rdtype: str | None = None) -> bool:
        records = dict(self.records())
        at = records.get(_name(name))
        if not at or (rdtype and rdtype.upper() not in at):
            return False
        if rdtype:
            del at[rdtype.upper()]
        if not rdtype or not at:
            del records[_name(name)]
        self._write(records)
        return True

    def lines(self) -> list[str]:
        """Every record in zone-file form."""
        out = []
        for name, sets in sorted(self.records().items()):
            for rdtype, values in sorted(sets.items()):
                for value in values:
                    text = txt_rdata(value) if rdtype == "TXT" else value
                    out.append(f"{name}. {TTL} IN {rdtype} {text}")
        return out

    def answer(self, wire: bytes, *, max_size: int | None = None) -> bytes:
        """The response to one query in wire form (``max_size``: truncate beyond it)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return b""  # not DNS: say nothing
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        records = self.records()
        for question in query.question:
            name = _name(question.name.to_text())
            rdtype = dns.rdatatype.to_text(question.rdtype)
            for _ in range(8):  # follow CNAMEs inside the zone, a bounded number of times
                sets = records.get(name, {})
                if rdtype != "CNAME" and "CNAME" in sets:
                    response.answer.append(self._rrset(name, "CNAME", sets["CNAME"]))
                    name = _name(sets["CNAME"][0])
                    continue
                if rdtype in sets:
                    response.answer.append(self._rrset(name, rdtype, sets[rdtype]))
                elif not response.answer and not any(
                    n == name or n.endswith("." + name) for n in records
                ):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                break
        limit = max_size or 65535
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    @staticmethod
    def _rrset(name: str, rdtype: str, values: list[str]) -> dns.rrset.RRset:
        texts = [txt_rdata(v) if rdtype == "TXT" else v for v in values]
        return dns.rrset.from_text(name + ".", TTL, "IN", rdtype, *texts)


def udp_limit(wire: bytes) -> int:
    """How large a UDP answer the asker takes: its EDNS payload size, else 512."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return UDP_LIMIT
    return max(UDP_LIMIT, query.payload) if query.edns >= 0 else UDP_LIMIT


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        answer = self.zone.answer(data, max_size=udp_limit(data))
        if answer and self.transport is not None:
            self.transport.sendto(answer, addr)


async def _tcp(zone: Zone, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        while True:  # RFC 7766: several queries may share a connection
            async with asyncio.timeout(10):
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(size)
            answer = zone.answer(data)
            if not answer:
                break
            writer.write(struct.pack("!H", len(answer)) + answer)
            await writer.drain()
    writer.close()


async def serve(zone_file: Path, host: str, port: int) -> None:
    """Answer from ``zone_file`` on ``host:port`` (UDP and TCP) until SIGTERM or SIGINT."""
    zone = Zone(zone_file)
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(zone), local_addr=(host, port))
    tcp = await asyncio.start_server(lambda r, w: _tcp(zone, r, w), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"dns: answering on {host}:{port} (UDP, TCP) from {zone_file}", flush=True)
    await stop.wait()
    udp.close()
    tcp.close()
    await tcp.wait_closed()
