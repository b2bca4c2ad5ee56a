"""The dev DNS server's answers, from its zone file: what verification and DKIM checks see."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from hato.devdns import Zone, txt_rdata

LONG = "v=DKIM1; k=rsa; p=" + "A" * 392  # an RSA-2048 record: more than 255 bytes


def ask(zone: Zone, name: str, rdtype: str, *, max_size: int | None = None) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.message.from_wire(zone.answer(query.to_wire(), max_size=max_size))


@pytest.fixture
def zone(tmp_path) -> Zone:
    z = Zone(tmp_path / "zone.json")
    z.set("s1._domainkey.shop.example", "TXT", [LONG])
    z.set("shop.example", "TXT", ["v=spf1 include:spf.hato.localhost ~all"])
    z.set("bounces.shop.example", "CNAME", ["bounces.hato.localhost."])
    z.set("bounces.hato.localhost", "A", ["127.0.0.1"])
    return z


def test_a_long_txt_record_comes_back_whole(zone: Zone) -> None:
    """A value over 255 bytes is split into strings that join to it again, answered with AA."""
    reply = ask(zone, "S1._domainkey.Shop.Example.", "TXT")
    assert reply.flags & dns.flags.AA
    strings = reply.answer[0][0].strings
    assert len(strings) == 2 and b"".join(strings).decode() == LONG


def test_names_that_do_not_exist_and_names_without_that_type(zone: Zone) -> None:
    """NXDOMAIN for a name with nothing at or under it; NOERROR and no answer for a name
    that exists with other types, or only has names under it."""
    assert ask(zone, "nowhere.example", "TXT").rcode() == dns.rcode.NXDOMAIN
    for name in ("shop.example", "_domainkey.shop.example"):
        reply = ask(zone, name, "MX")
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_cnames_are_followed_inside_the_zone(zone: Zone) -> None:
    """A CNAME is answered with the record it leads to in the zone, as for a tenant's bounce domain
    pointing at Hato's."""
    reply = ask(zone, "bounces.shop.example", "A")
    kinds = [dns.rdatatype.to_text(r.rdtype) for r in reply.answer]
    assert kinds == ["CNAME", "A"]


def test_an_answer_too_big_for_udp_is_truncated(zone: Zone) -> None:
    """Over the asker's UDP size the answer is empty with TC set, so resolvers ask over TCP;
    without a limit (TCP) it is whole."""
    zone.set("big.shop.example", "TXT", [LONG, LONG + "B"])
    reply = ask(zone, "big.shop.example", "TXT", max_size=512)
    assert reply.flags & dns.flags.TC and not reply.answer
    assert len(ask(zone, "big.shop.example", "TXT").answer[0]) == 2


def test_the_zone_file_is_read_again_when_another_process_writes_it(zone: Zone) -> None:
    """The server's Zone sees what `hato dev dns` (another Zone on the same file) published."""
    other = Zone(zone.path)
    other.set("new.example", "TXT", ["fresh"])
    assert ask(zone, "new.example", "TXT").answer[0][0].strings == (b"fresh",)
    assert other.remove("new.example")
    assert ask(zone, "new.example", "TXT").rcode() == dns.rcode.NXDOMAIN


def test_records_that_would_not_parse_are_refused_when_set(zone: Zone) -> None:
    """A type the server does not serve, or a value dnspython cannot read, is refused by `set` and
    nothing is stored: the zone never holds what it could not answer."""
    with pytest.raises(ValueError, match="not served"):
        zone.set("a.example", "SRV", ["0 0 25 mx.example."])
    with pytest.raises(Exception):  # noqa: B017 - dnspython's syntax error, at set time
        zone.set("a.example", "A", ["not-an-address"])
    assert "a.example" not in zone.records()


def test_txt_presentation_escapes_quotes() -> None:
    """Quotes in a TXT value are escaped in presentation form: what is served is what was set."""
    assert txt_rdata('say "hi"') == '"say \\"hi\\""'
