"""Envelope address parsing (services/ingest/addresses.py) under fuzzing: ``split`` never
raises, and whatever it accepts is a plain ``local@domain`` with no relay trick in it."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from services.ingest import addresses
from services.ingest.content import ContentError, one_mailbox
from shared.domains import domain_of

ATEXT = string.ascii_letters + string.digits + "#$&'*+/=?^_`{|}~-"
# Characters relay tricks and parser confusions are made of, to meet more often than at random.
TRICKY = ATEXT + '.@%!"[]:;<>(),\\ \t\r\n\x00\x7fé日.'

_atom = st.text(alphabet=ATEXT, min_size=1, max_size=12)
_label = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
valid_addresses = st.builds(
    lambda atoms, labels: ".".join(atoms) + "@" + ".".join(labels),
    st.lists(_atom, min_size=1, max_size=4),
    st.lists(_label, min_size=2, max_size=4),
).filter(lambda a: len(a.partition("@")[0]) <= addresses.LOCAL_PART_MAX)

any_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=TRICKY, max_size=80),
    # a valid address with tricky characters spliced in
    st.builds(
        lambda a, at, junk: a[:at] + junk + a[at:],
        valid_addresses,
        st.integers(0, 80),
        st.text(alphabet=TRICKY, min_size=1, max_size=6),
    ),
)


@given(any_text)
def test_split_never_raises_and_what_it_accepts_is_a_plain_mailbox(address: str) -> None:
    """Any text: None, or exactly ``local@domain`` back with the domain lower-cased, ASCII,
    with no source route, percent hack, bang path, quoting, literal or white space."""
    result = addresses.split(address)
    if result is None:
        return
    local, domain = result
    assert f"{local}@{domain}" == address.rpartition("@")[0] + "@" + domain
    assert address.lower().endswith("@" + domain) and domain == domain.lower()
    assert address.count("@") == 1 and address.isascii()
    assert not set(address) & set('%!"[]:;<>(),\\ \t\r\n\x00\x7f')
    assert 1 <= len(local) <= addresses.LOCAL_PART_MAX
    assert "." in domain and len(domain) <= addresses.DOMAIN_MAX
    assert ".." not in address and not local.startswith(".") and not local.endswith(".")
    assert domain_of(address) == domain


@given(valid_addresses)
def test_a_well_formed_address_is_accepted_and_read_alike_in_a_header(address: str) -> None:
    """Dot-atoms at a multi-label domain are accepted, and the From check reads that very
    address from them or refuses them (a local part like ``=?utf-8?q?x?=`` reads as an encoded
    word), never another address."""
    local, domain = address.rpartition("@")[::2]
    assert addresses.split(address) == (local, domain.lower())
    for value in (address, f"Name <{address}>"):
        try:
            assert one_mailbox(value) == address
        except ContentError:
            assert "=?" in local
