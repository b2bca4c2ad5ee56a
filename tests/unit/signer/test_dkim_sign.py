"""Every signature the signer makes verifies with independent verifiers (dkimpy and
Mail::DKIM), over the messages real senders produce."""

from __future__ import annotations

import base64
import hashlib

import dkim.canonicalization
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from services.signer.dkim_sign import (
    POLICY,
    SigningError,
    SigningKey,
    body_hash,
    header_list,
    sign,
    sign_each,
)
from shared.dkim import DkimKey, generate_ed25519, generate_rsa
from tests.helpers.dkim_verify import dkimpy, mail_dkim, records


@pytest.fixture(scope="module")
def shop():
    return generate_rsa("shop.test", "s1"), generate_ed25519("shop.test", "e1")


@pytest.fixture(scope="module")
def news():
    return generate_rsa("news.example", "n1")


def both(keys) -> list[SigningKey]:
    return [SigningKey.load(k) for k in keys]


BASE = (
    b"From: Shop <orders@shop.test>\r\nTo: bob@ok.test\r\nSubject: Order 7\r\n"
    b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <7@shop.test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
)

CASES = {
    "plain": BASE + b"Thank you.\r\n",
    "empty body": BASE,
    "bare LF": (BASE + b"line one\r\nline two\r\n").replace(b"\r\n", b"\n"),
    "8-bit header": BASE.replace(b"Order 7", b"Caf\xe9 order") + b"body\r\n",
    "UTF-8 headers": BASE.replace(b"Shop <", "ショップ <".encode()).replace(
        b"Order 7", "ご注文 ✓".encode()
    )
    + "本文\r\n".encode(),
    "folded and long headers": BASE.replace(
        b"Subject: Order 7", b"Subject: " + b" ".join([b"word"] * 40) + b"\r\n\tcontinued"
    ).replace(
        b"To: bob@ok.test", b"To: " + b",\r\n ".join(b"user%d@ok.test" % i for i in range(60))
    )
    + b"body\r\n",
    "duplicate headers": BASE.replace(
        b"Subject: Order 7\r\n", b"Subject: first\r\nSubject: second\r\n"
    )
    + b"body  with   spaces \r\n\r\n\r\n",
}


@pytest.mark.parametrize("case", CASES)
def test_rsa_and_ed25519_signatures_verify(shop, case: str) -> None:
    """Both signatures on one message: dkimpy passes both; Mail::DKIM (Debian's has no
    Ed25519) passes the RSA one."""
    signed = sign(CASES[case], both(shop))
    published = records(*shop)
    assert dkimpy(signed, published) == [True, True]
    results = dict(mail_dkim(signed, published))
    assert results["rsa-sha256"] == "pass", results


def test_several_from_domains_sign_with_their_own_keys(shop, news) -> None:
    """Each From domain signs with its own key (d= is that domain), and both verifiers pass it."""
    a = sign(CASES["plain"], both(shop[:1]))
    b = sign(CASES["plain"].replace(b"orders@shop.test", b"editor@news.example"), both([news]))
    published = records(shop[0], news)
    assert b"d=shop.test" in a and b"d=news.example" in b
    assert dkimpy(a, published) == dkimpy(b, published) == [True]
    assert mail_dkim(b, published) == [("rsa-sha256", "pass")]


def test_a_25_mb_message_signs_and_verifies(shop) -> None:
    """A message at the 25 MB limit, its lines at 998 octets, signs and Mail::DKIM verifies it."""
    line = b"x" * 998 + b"\r\n"
    big = BASE + line * (25 * 1024 * 1024 // len(line))
    signed = sign(big, both(shop[:1]))
    assert mail_dkim(signed, records(shop[0])) == [("rsa-sha256", "pass")]


def test_over_signed_headers_cannot_be_added_and_there_is_no_l_tag(shop) -> None:
    """A second Subject (or To, From ...) added after signing breaks the signature."""
    signed = sign(CASES["plain"], both(shop))
    header = signed.split(b"\r\n\r\n", 1)[0]
    assert b"l=" not in header.replace(b"list-", b"")
    assert b"c=relaxed/relaxed" in header
    assert max(len(line) for line in signed.split(b"\r\n\r\n", 1)[0].split(b"\r\n")) <= 78
    published = records(*shop)
    for extra in (b"Subject: Free money\r\n", b"From: ceo@shop.test\r\n", b"To: x@evil.test\r\n"):
        tampered = signed.replace(b"From: Shop", extra + b"From: Shop", 1)
        assert dkimpy(tampered, published) == [False, False]
        assert dict(mail_dkim(tampered, published))["rsa-sha256"] == "fail"


def test_the_header_list_follows_rfc_6376_and_over_signs() -> None:
    """h= names RFC 6376's recommended fields as often as they occur and the over-signed ones once
    more (To even when absent); trace and unknown fields are left out."""
    headers = [
        (b"From", b"a"),
        (b"Subject", b"x"),
        (b"Subject", b"y"),
        (b"X-Other", b"z"),
        (b"Received", b"r"),
    ]
    h = header_list(headers)
    assert h.count(b"from") == 2 and h.count(b"subject") == 3 and h.count(b"to") == 1
    assert b"x-other" not in h and b"received" not in h


def test_no_from_header_or_unparseable_headers_are_refused(shop) -> None:
    """A message without a From, or whose header cannot be read, raises SigningError instead of
    being signed for no domain."""
    with pytest.raises(SigningError, match="no From"):
        sign(b"Subject: x\r\n\r\nbody\r\n", both(shop))
    with pytest.raises(SigningError):
        sign(b"\x00\x01 not a header\r\n\r\n", both(shop))


# RFC 8463 Appendix A: keys, DNS records and the signed example message.
RFC_SEED = base64.b64decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
RFC_ED25519_RECORD = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC_RSA_RECORD = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08"
    "a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM"
    "KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)
RFC_RECORDS = {
    "brisbane._domainkey.football.example.com": RFC_ED25519_RECORD,
    "test._domainkey.football.example.com": RFC_RSA_RECORD,
}
RFC_BODY_HASH = b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
RFC_UNSIGNED = (
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"
)
RFC_SIGNED = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    b" date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
) + RFC_UNSIGNED


def test_the_rfc_8463_example_verifies() -> None:
    """Both signatures of the RFC's example pass dkimpy; Mail::DKIM passes the RSA one."""
    assert dkimpy(RFC_SIGNED, RFC_RECORDS) == [True, True]
    assert ("rsa-sha256", "pass") in mail_dkim(RFC_SIGNED, RFC_RECORDS)


def test_our_ed25519_with_the_rfc_key_matches_the_rfc() -> None:
    """The RFC's seed gives the RFC's public key in our stored form, our body hash is the
    RFC's, and our signature with that key verifies against the RFC's DNS record."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(RFC_SEED)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    ).decode()
    assert f"p={public}" in RFC_RECORDS["brisbane._domainkey.football.example.com"]
    key = DkimKey("football.example.com", "brisbane", "ed25519-sha256", pem, public)
    signed = sign(RFC_UNSIGNED, [SigningKey.load(key)])
    assert b"bh=" + RFC_BODY_HASH in signed.replace(b"\r\n ", b" ")
    body = RFC_UNSIGNED.split(b"\r\n\r\n", 1)[1]
    assert base64.b64encode(hashlib.sha256(POLICY.canonicalize_body(body)).digest()) == (
        RFC_BODY_HASH
    )
    assert dkimpy(signed, RFC_RECORDS) == [True]


def test_dkim_over_signs_both_unsubscribe_fields() -> None:
    """h= lists List-Unsubscribe and List-Unsubscribe-Post once more than they occur, so
    neither can be added after signing."""
    headers = [
        (b"From", b" a@b.test"),
        (b"List-Unsubscribe", b" <https://x>"),
        (b"List-Unsubscribe-Post", b" List-Unsubscribe=One-Click"),
    ]
    h = header_list(headers)
    assert h.count(b"list-unsubscribe") == 2 and h.count(b"list-unsubscribe-post") == 2


def test_each_recipients_copy_is_signed_with_its_own_unsubscribe_fields(shop) -> None:
    """sign_each signs every recipient's header block on its own over one body hash: each
    copy verifies (dkimpy and Mail::DKIM), carries only its own link, and a List-Unsubscribe
    added after signing breaks the signature (over-signed)."""
    heads = [
        b"List-Unsubscribe: <https://m.test/u/%d>\r\nList-Unsubscribe-Post: "
        b"List-Unsubscribe=One-Click\r\n" % i
        for i in range(3)
    ]
    copies = sign_each(CASES["plain"], both(shop), heads)
    published = records(*shop)
    for i, copy in enumerate(copies):
        assert dkimpy(copy, published) == [True, True]
        assert dict(mail_dkim(copy, published))["rsa-sha256"] == "pass"
        assert b"/u/%d>" % i in copy and copy.count(b"List-Unsubscribe:") == 1
        added = copy.replace(b"From:", b"List-Unsubscribe: <https://evil.test/>\r\nFrom:", 1)
        assert dkimpy(added, published) == [False, False]


_body_octets = st.lists(
    st.sampled_from([b"a", b"x.y", b" ", b"  ", b"\t", b" \t ", b".", b"\r\n", b"\r\n\r\n"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(body=_body_octets)
def test_the_body_hash_is_dkimpys(body: bytes) -> None:
    """The relaxed body hash, with its shortcut for bodies without runs of blanks, is the one
    dkimpy computes (RFC 6376 3.4.4)."""
    canonical = dkim.canonicalization.Relaxed.canonicalize_body(body)
    assert body_hash(body) == base64.b64encode(hashlib.sha256(canonical).digest())


def _dkimpys_signatures(header_block: bytes, keys, bh: bytes, timestamp: bytes) -> bytes:
    """The DKIM-Signature fields with dkimpy's own header canonicalization and hashing: the
    reference for the signer's."""
    from services.signer.dkim_sign import _HEADER_NAME, POLICY, signed_field, unsigned_field

    headers, _ = dkim.rfc822_parse(header_block)
    include = header_list(headers)
    canonical = POLICY.canonicalize_headers(headers)
    out = b""
    for key in keys:
        unsigned = unsigned_field(key, timestamp, include, bh)
        hasher = hashlib.sha256()
        sig = (_HEADER_NAME, b" " + unsigned)
        dkim.hash_headers(hasher, POLICY, canonical, include, sig, {})
        out += signed_field(unsigned, key.sign_digest(hasher.digest()))
    return out


_field_names = st.sampled_from(
    [
        b"From",
        b"from",
        b"To",
        b"Subject",
        b"SUBJECT",
        b"Date",
        b"Cc",
        b"Reply-To",
        b"X-Mailer",
        b"Received",
        b"Message-ID",
        b"List-Unsubscribe",
        b"MIME-Version",
        b"Content-Type",
    ]
)
_field_values = st.lists(
    st.sampled_from(
        [
            b"a",
            b"Shop <o@shop.test>",
            b" ",
            b"  ",
            b"\t",
            b" \t",
            b"\r\n ",
            b"\r\n\t",
            b"x;y=z",
            b"=?UTF-8?B?5rOo5paH?=",
            b"\xe6\xb3\xa8",
        ]
    ),
    max_size=8,
).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.lists(st.tuples(_field_names, _field_values), min_size=0, max_size=10),
    from_value=_field_values,
)
def test_the_header_hash_is_dkimpys(shop, fields, from_value) -> None:
    """The signer canonicalises and hashes only the fields it signs, its own way: for any
    header (folded lines, tabs and runs of blanks, repeated and over-signed fields, names in
    any case) the DKIM-Signature it writes is the one dkimpy's functions give."""
    from services.signer.dkim_sign import _signatures

    block = b"From:" + from_value + b"\r\n"
    block += b"".join(name + b":" + value + b"\r\n" for name, value in fields) + b"\r\n"
    keys = both(shop)  # RSA and Ed25519: both deterministic, so the bytes compare
    bh, t = b"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", b"1796000000"
    assert _signatures(block, keys, bh, t) == _dkimpys_signatures(block, keys, bh, t)
