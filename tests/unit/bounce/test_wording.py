"""Wordings of the MTAs and providers, each with a minimal made-up example: what the rules of
reasons.toml and the parser read from them."""

from __future__ import annotations

import pytest

from shared.bounces.classify import rules
from shared.bounces.parse import Finding, Kind, parse, prefer_status


@pytest.mark.parametrize(
    "recipient, status, text, reason",
    [
        # Exchange Online's 5.1.10 is its "recipient not found", not RFC 7505's null MX.
        (
            "x@example.com",
            "5.1.10",
            "The email address wasn't found at the destination domain. It might be misspelled.",
            "userunknown",
        ),
        ("x@example.com", "5.1.10", "Recipient address has null MX", "notaccept"),
        # Facebook's published codes: RCP-P1 no such address, RCP-P2 the recipient's settings.
        (
            "x@facebook.com",
            "5.1.1",
            "550 5.1.1 RCP-P1 http://postmaster.facebook.com/response_codes#rcp "
            "Recipient address does not exist",
            "userunknown",
        ),
        (
            "x@facebook.com",
            "5.1.1",
            "550 5.1.1 RCP-P2 http://postmaster.facebook.com/response_codes#rcp",
            "filtered",
        ),
        (
            "x@facebook.com",
            "5.7.1",
            "550 5.7.1 POL-P2 http://postmaster.facebook.com/response_codes#pol",
            "blocked",
        ),
        # Gmail's "rejected by the recipient domain" is its preamble for any refusal.
        (
            "x@example.com",
            "5.7.1",
            "Google tried to deliver your message, but it was rejected by the recipient domain. "
            "The error that the other server returned was: 554 5.7.1 Service unavailable; "
            "Client host [192.0.2.9] blocked using dnsbl.example.org",
            "blocked",
        ),
        ("x@example.com", "5.0.0", "550 Mail rejected by recipient", "filtered"),
        # Too many connections is not too many messages.
        ("x@example.net", "4.3.2", "452 4.3.2 Connection rate limit exceeded.", "toomanyconn"),
        ("x@example.net", "4.7.0", "421 4.7.0 Rate limit exceeded, slow down", "speeding"),
        (
            "x@example.net",
            "",
            "The recipient server did not accept our requests to connect. [socket error]",
            "expired",
        ),
        ("x@example.net", "", "Network error on destination MXs", "networkerror"),
        (
            "x@example.net",
            "5.0.0",
            "554 IP=192.0.2.1 - A problem occurred. (Ask your postmaster for help or to "
            "contact abuse@example.net to clarify.)",
            "blocked",
        ),
        ("x@example.co.jp", "", "ディレクトリのリストにありません", "userunknown"),
        ("x@nx.example", "", "DNS lookup failure: host nx.example not found", "hostunknown"),
    ],
)
def test_wording(recipient, status, text, reason) -> None:
    """A provider's or an MTA's own words for a reason are read as that reason."""
    verdict = rules().classify_finding(Finding(recipient, status=status, diagnostic=text))
    assert verdict.reason == reason, verdict


POWERMTA = b"""From: postmaster@mta.example.net
To: sender@shop.test
Subject: Delivery report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Delivery failed.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns;mta.example.net

Final-Recipient: rfc822;gone@example.jp
Action: failed
Status: 5.2.1 (mailbox disabled, not accepting messages)
Diagnostic-Code: smtp;550 5.2.1 <gone@example.jp>... User Unknown
X-PowerMTA-BounceCategory: %s

--B--
"""


@pytest.mark.parametrize(
    "category, reason", [(b"bad-mailbox", "userunknown"), (b"policy-related", "filtered")]
)
def test_powermta_bounce_category(category, reason) -> None:
    """PowerMTA's bounce category names the reason when it names one; a broad one does not."""
    report = parse(POWERMTA % category)
    assert [v.reason for v in rules().classify(report)] == [reason]


def _classified(raw: bytes) -> list[tuple[str, str]]:
    report = parse(raw)
    assert report.kind is Kind.DSN, report
    return [(v.recipient, v.reason) for v in rules().classify(report)]


def test_exim_quoted_refusal_is_the_diagnostic() -> None:
    """Exim's quoted line under the address is the remote refusal, whatever words it uses."""
    raw = b"""From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: sender@shop.test
Subject: Mail delivery failed: returning message to sender

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  someone@example.com
    "Sorry, you are sending to/from an address that has been blacklisted"

------ This is a copy of the message, including all the headers. ------

To: someone@example.com
Subject: Hello
"""
    assert _classified(raw) == [("someone@example.com", "rejected")]


def test_notes_reason_before_address() -> None:
    """Lotus Notes puts the reason on the line before the address, in the user's language."""
    raw = """From: postmaster@notes.example.co.jp
To: sender@shop.test
Subject: Undeliverable message
Content-Type: text/plain; charset=utf-8

------- Failure Reasons  --------

ディレクトリのリストにありません
someone@notes.example.co.jp

------- Returned Message --------
Subject: Hello
""".encode()
    assert _classified(raw) == [("someone@notes.example.co.jp", "userunknown")]


def test_mail_to_oneself_bounces_to_its_own_address() -> None:
    """A bounce of mail sent to oneself names only the sender: that address is the recipient."""
    raw = b"""From: MAILER-DAEMON@mx.shop.test
To: me@shop.test
Subject: failure notice

Hi. This is the qmail-send program at mx.shop.test.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<me@shop.test>:
192.0.2.1 does not like recipient.
Remote host said: 552 Error: disk quota exceeded
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.
"""
    assert _classified(raw) == [("me@shop.test", "mailboxfull")]


def test_mail_to_a_postmaster_bounces() -> None:
    """A postmaster address is a recipient when it is the only one an error follows."""
    raw = b"""From: MAILER-DAEMON <>
To: me@shop.test
Subject: Mail delivery failed

There was an error delivering your mail to <postmaster@nx.example>.

DNS lookup failure: host nx.example not found

Message headers follow.
"""
    assert _classified(raw) == [("postmaster@nx.example", "hostunknown")]


GMAIL = b"""From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: me@gmail.example
Subject: Delivery Status Notification (Failure)

This is an automatically generated Delivery Status Notification

Delivery to the following recipient failed permanently:

     someone@example.org

Technical details of permanent failure:
Google tried to deliver your message, but it was rejected by the recipient domain. We
recommend contacting the other email provider for further information about the cause of
this error. The error that the other server returned was: 554 554 %s (state %s).
"""


@pytest.mark.parametrize(
    "reply, state, reason",
    [
        (b"5.7.0 Header error", b"18", "filtered"),  # refused after DATA, no precise code
        (b"5.7.0 Message refused", b"17", "filtered"),
        (b"5.2.2 Mailbox full", b"18", "mailboxfull"),  # a precise code says more
    ],
)
def test_gmail_state(reply, state, reason) -> None:
    """Gmail's "(state N)" says where the remote host refused; after DATA its filter."""
    assert _classified(GMAIL % (reply, state)) == [("someone@example.org", reason)]


ARF_TWO = b"""From: reports@fbl.example
To: abuse@shop.test
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="A"

--A
Content-Type: text/plain

An abuse report.

--A
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: fbl/1.0
Version: 1
Original-Rcpt-To: one@example.com
Original-Rcpt-To: two@example.net

--A--
"""


def test_arf_names_every_original_recipient() -> None:
    """An ARF report with one Original-Rcpt-To per recipient is a complaint from each."""
    report = parse(ARF_TWO)
    assert report.kind is Kind.COMPLAINT
    assert [f.recipient for f in report.findings] == ["one@example.com", "two@example.net"]


JMRP = b"""From: <staff@hotmail.com>
To: abuse@shop.test
Subject: complaint about message from 192.0.2.1
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: message/rfc822
Content-Disposition: inline

X-HmXmrOriginalRecipient: reader@example.com
From: News <news@shop.test>
To: reader@example.com
Subject: Offers

Hello

--M--
"""


def test_microsoft_jmrp_is_a_complaint() -> None:
    """Microsoft's JMRP report (no feedback-report part) is a complaint from the reader."""
    report = parse(JMRP)
    assert (report.kind, [f.recipient for f in report.findings]) == (
        Kind.COMPLAINT,
        ["reader@example.com"],
    )
    forwarded = parse(JMRP.replace(b"complaint about message from 192.0.2.1", b"Fwd: Offers"))
    assert forwarded.kind is not Kind.COMPLAINT


UNSUBSCRIBE = b"""From: reader@icloud.example
To: opt-out-1@shop.test
Subject: unsubscribe
Auto-Submitted: auto-replied
X-Apple-Unsubscribe: true
Content-Type: text/plain

Apple Mail sent this email to unsubscribe from the message "Offers".
"""


def test_apple_mail_unsubscribe_is_an_opt_out() -> None:
    """Apple Mail's unsubscribe mail is the sender's opt-out, not an auto-reply."""
    report = parse(UNSUBSCRIBE)
    assert (report.kind, report.feedback_type, [f.recipient for f in report.findings]) == (
        Kind.COMPLAINT,
        "opt-out",
        ["reader@icloud.example"],
    )


@pytest.mark.parametrize(
    "field, diagnostic, status",
    [
        (
            "5.0.0",
            "5.1.0 - Unknown address error 550-'5.2.2 <x@example.jp>... Mailbox Full'",
            "5.2.2",
        ),
        ("5.1.0", "550 5.1.1 <x@example.jp>... User Unknown", "5.1.1"),
        (
            "4.4.7",
            "450 4.7.1 <mx.example>: Client host rejected: may not be mail exchanger",
            "4.7.1",
        ),
        ("4.4.7", "421 4.4.0 connection lost", "4.4.7"),  # no precise code from the remote
        ("5.1.1", "550 5.2.2 Mailbox full", "5.1.1"),  # a precise field stays
        ("5.0.0", "554 4.7.1 try later", "5.0.0"),  # another class: the field's
    ],
)
def test_status_prefers_the_remote_precise_code(field, diagnostic, status) -> None:
    """A reporting MTA's generic status gives way to the precise code the remote host quoted."""
    assert prefer_status(field, diagnostic) == status
