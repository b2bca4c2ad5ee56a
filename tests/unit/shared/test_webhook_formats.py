"""Hato's events in SendGrid's, Postmark's and Mailgun's webhook shapes, and their signatures
checked the way each provider documents."""

from __future__ import annotations

import hashlib
import hmac
import json

from sendgrid.helpers.eventwebhook import EventWebhook

from shared.webhook_formats import (
    SENDGRID_SIGNATURE,
    SENDGRID_TIMESTAMP,
    WebhookFormat,
    mailgun_event,
    new_signing_key,
    postmark_event,
    posts,
    sendgrid_event,
)


def event(type_: str, **detail) -> dict:
    return {
        "id": f"ev-{type_}",
        "type": type_,
        "message_id": "m-1",
        "tenant": "acme",
        "address": "bob@ok.test",
        "reply": {"code": 550, "enhanced": "5.7.1", "text": "spam"},
        "detail": detail,
        "at": "2026-12-03T08:00:00+00:00",
        "tags": ["news"],
        "metadata": {"user_id": "u-1"},
    }


def test_sendgrid_names_and_fields() -> None:
    """Accepted is processed, suppressed dropped, complained spamreport, a block a bounce of
    type blocked with its classification, an unsubscribe unsubscribe (group_unsubscribe with
    an ASM group); custom args sit at the top level, categories in category; a signed or DKIM
    event has no SendGrid word."""
    assert sendgrid_event(event("accepted"))["event"] == "processed"
    assert sendgrid_event(event("suppressed"))["event"] == "dropped"
    assert sendgrid_event(event("complained"))["event"] == "spamreport"
    blocked = sendgrid_event(event("bounced", reason="blocked"))
    assert (blocked["type"], blocked["bounce_classification"]) == ("blocked", "Reputation")
    assert blocked["user_id"] == "u-1" and blocked["category"] == ["news"]
    assert blocked["timestamp"] == 1796284800
    assert sendgrid_event(event("signed")) is None
    assert sendgrid_event(event("unsubscribed"))["event"] == "unsubscribe"
    grouped = event("unsubscribed") | {"metadata": {"asm_group_id": "42"}}
    assert sendgrid_event(grouped)["event"] == "group_unsubscribe"
    assert sendgrid_event(grouped)["asm_group_id"] == 42


def test_postmark_and_mailgun_names() -> None:
    """Postmark: a complaint is a SpamComplaint record, a suppression or an unsubscribe a
    SubscriptionChange; Mailgun: a deferral is a temporary failure, a complaint complained,
    an unsubscribe unsubscribed."""
    assert postmark_event(event("complained"))["RecordType"] == "SpamComplaint"
    change = postmark_event(event("suppressed", reason="feedback"))
    assert (change["RecordType"], change["SuppressionReason"]) == (
        "SubscriptionChange",
        "SpamComplaint",
    )
    soft = postmark_event(event("bounced", hard=False))
    assert (soft["Type"], soft["Inactive"]) == ("SoftBounce", False)
    assert postmark_event(event("accepted")) is None
    deferred = mailgun_event(event("deferred", attempt=2))
    assert (deferred["event"], deferred["severity"]) == ("failed", "temporary")
    assert deferred["delivery-status"]["attempt-no"] == 2
    assert mailgun_event(event("complained"))["event"] == "complained"
    assert mailgun_event(event("unsubscribed"))["event"] == "unsubscribed"
    left = postmark_event(event("unsubscribed"))
    assert (left["RecordType"], left["SuppressionReason"]) == (
        "SubscriptionChange",
        "ManualSuppression",
    )


def test_signatures_verify_as_the_providers_document() -> None:
    """SendGrid's batch verifies with its library and the public key; each Mailgun POST's
    signature is the HMAC of timestamp and token; events with no word send nothing."""
    pem, public = new_signing_key()
    events = [event("accepted"), event("delivered"), event("signed")]
    [(body, headers)] = posts(WebhookFormat.SENDGRID, events, secret="", key_pem=pem)
    assert [e["event"] for e in json.loads(body)] == ["processed", "delivered"]
    verifier = EventWebhook()
    key = verifier.convert_public_key_to_ecdsa(public)
    assert verifier.verify_signature(
        body.decode(), headers[SENDGRID_SIGNATURE], headers[SENDGRID_TIMESTAMP], key
    )
    mailgun = posts(WebhookFormat.MAILGUN, events, secret="key-1", key_pem=None)
    assert len(mailgun) == 2
    for body, _ in mailgun:
        sig = json.loads(body)["signature"]
        mac = hmac.new(b"key-1", (sig["timestamp"] + sig["token"]).encode(), hashlib.sha256)
        assert sig["signature"] == mac.hexdigest()
    assert posts(WebhookFormat.POSTMARK, [event("signed")], secret="", key_pem=None) == []
