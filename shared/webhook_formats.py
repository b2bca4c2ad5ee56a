"""Webhook formats: Hato's events in the shapes event consumers already parse (listmonk, CRMs,
a team's own code written for a hosted relay), each signed the way that provider signs.

- ``hato`` (default): ``{"events": [...]}`` in one POST, ``Hato-Signature`` (``webhooks.py``).
- ``sendgrid``: SendGrid's event webhook, a JSON array of events (``processed``,
  ``delivered``, ``deferred``, ``bounce`` with ``type`` and ``bounce_classification``,
  ``dropped``, ``spamreport``, ``unsubscribe`` or ``group_unsubscribe``), categories in
  ``category`` and custom args at the top level; signed as SendGrid's signed event webhook:
  ECDSA P-256 with SHA-256 over the timestamp followed by the body, base64 DER in
  ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in
  ``X-Twilio-Email-Event-Webhook-Timestamp``. Each such endpoint has its own key pair; its
  public key (base64 DER, as SendGrid shows it) is in the webhook's listing.
- ``postmark``: one POST per event, ``RecordType`` ``Delivery``, ``Bounce``,
  ``SpamComplaint`` or ``SubscriptionChange`` (a suppression or an unsubscribe);
  authenticated, as Postmark does, by the Basic auth credentials written in the endpoint's
  URL (``https://user:pass@host/...``).
- ``mailgun``: one POST per event, ``{"signature": {timestamp, token, signature},
  "event-data": {...}}``, the signature the hex HMAC-SHA256 of timestamp and token with the
  endpoint's secret as Mailgun's HTTP webhook signing key.

Events a format has no word for (``signed``, DKIM key changes ...) are not sent to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


class WebhookFormat(StrEnum):
    """The shape and signature of a webhook endpoint's POSTs."""

    HATO = "hato"
    SENDGRID = "sendgrid"
    POSTMARK = "postmark"
    MAILGUN = "mailgun"

    @property
    def one_per_post(self) -> bool:
        """Postmark and Mailgun POST each event by itself."""
        return self in (WebhookFormat.POSTMARK, WebhookFormat.MAILGUN)


# -- keys ----------------------------------------------------------------------------------


def new_signing_key() -> tuple[bytes, str]:
    """A P-256 key pair for a SendGrid-format endpoint: (private key PEM, public key as
    SendGrid publishes it: base64 of its DER SubjectPublicKeyInfo)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_key_of(pem)


def public_key_of(pem: bytes) -> str:
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sendgrid_signature(pem: bytes, timestamp: str, body: bytes) -> str:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


# -- shapes --------------------------------------------------------------------------------


def _unix(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


def _reply_text(event: dict[str, Any]) -> str:
    reply = event.get("reply") or {}
    return " ".join(
        str(p) for p in (reply.get("code"), reply.get("enhanced"), reply.get("text")) if p
    )


# Hato's bounce reasons (Sisimai's) as SendGrid's bounce classifications.
_CLASSIFICATION = {
    "userunknown": "Invalid Address",
    "hostunknown": "Invalid Address",
    "hasmoved": "Invalid Address",
    "notaccept": "Invalid Address",
    "syntaxerror": "Invalid Address",
    "mailboxfull": "Mailbox Unavailable",
    "suspend": "Mailbox Unavailable",
    "filtered": "Mailbox Unavailable",
    "blocked": "Reputation",
    "badreputation": "Reputation",
    "requireptr": "Reputation",
    "authfailure": "Reputation",
    "spamdetected": "Content",
    "virusdetected": "Content",
    "contenterror": "Content",
    "policyviolation": "Content",
    "mesgtoobig": "Content",
    "exceedlimit": "Frequency or Volume",
    "toomanyconn": "Frequency or Volume",
    "speeding": "Frequency or Volume",
    "systemerror": "Technical",
    "systemfull": "Technical",
    "networkerror": "Technical",
    "mailererror": "Technical",
    "securityerror": "Technical",
    "expired": "Technical",
}
_BLOCKS = {"blocked", "badreputation", "requireptr", "authfailure", "spamdetected", "rejected"}


def sendgrid_event(event: dict[str, Any]) -> dict[str, Any] | None:
    kind = event["type"]
    detail = event.get("detail") or {}
    reason = str(detail.get("reason") or "")
    base: dict[str, Any] = {
        # Custom args first, at the top level as SendGrid puts them: its own fields win.
        **(event.get("metadata") or {}),
        "email": event.get("address"),
        "timestamp": int(_unix(event["at"])),
        "sg_event_id": event["id"],
        "sg_message_id": event.get("message_id"),
        "smtp-id": event.get("message_id"),
        "category": list(event.get("tags") or []),
    }
    if kind == "accepted":
        return base | {"event": "processed"}
    if kind == "delivered":
        return base | {
            "event": "delivered",
            "response": _reply_text(event),
            "ip": detail.get("source_ip"),
        }
    if kind == "deferred":
        return base | {
            "event": "deferred",
            "response": _reply_text(event),
            "attempt": str(detail.get("attempt", "")),
        }
    if kind == "bounced":
        reply = event.get("reply") or {}
        return base | {
            "event": "bounce",
            "type": "blocked" if reason in _BLOCKS else "bounce",
            "bounce_classification": _CLASSIFICATION.get(reason, "Unclassified"),
            "reason": _reply_text(event),
            "status": reply.get("enhanced") or "",
        }
    if kind in ("suppressed", "expired", "failed"):
        words = {
            "suppressed": "Bounced Address",
            "expired": "Expired",
            "failed": reason or "Failed",
        }
        return base | {"event": "dropped", "reason": words[kind]}
    if kind == "complained":
        return base | {"event": "spamreport"}
    if kind == "unsubscribed":
        group = (event.get("metadata") or {}).get("asm_group_id")
        if group and str(group).isdigit():
            return base | {"event": "group_unsubscribe", "asm_group_id": int(group)}
        return base | {"event": "unsubscribe"}
    return None


def _postmark_base(event: dict[str, Any]) -> dict[str, Any]:
    tags = event.get("tags") or []
    return {
        "MessageID": event.get("message_id"),
        "ServerID": 0,
        "MessageStream": "outbound",
        "Tag": tags[0] if tags else "",
        "Metadata": event.get("metadata") or {},
    }


def postmark_event(event: dict[str, Any]) -> dict[str, Any] | None:
    kind = event["type"]
    detail = event.get("detail") or {}
    if kind == "delivered":
        return _postmark_base(event) | {
            "RecordType": "Delivery",
            "Recipient": event.get("address"),
            "DeliveredAt": event["at"],
            "Details": _reply_text(event),
        }
    if kind in ("bounced", "complained"):
        hard = bool(detail.get("hard", True))
        complaint = kind == "complained"
        return _postmark_base(event) | {
            "RecordType": "SpamComplaint" if complaint else "Bounce",
            "ID": event["id"],
            "Type": "SpamComplaint" if complaint else ("HardBounce" if hard else "SoftBounce"),
            "TypeCode": 512 if complaint else (1 if hard else 4096),
            "Name": "Spam complaint" if complaint else ("Hard bounce" if hard else "Soft bounce"),
            "Description": str(detail.get("reason") or ""),
            "Details": _reply_text(event),
            "Email": event.get("address"),
            "BouncedAt": event["at"],
            "DumpAvailable": False,
            "Inactive": complaint or hard,
            "CanActivate": True,
        }
    if kind == "unsubscribed":
        return _postmark_base(event) | {
            "RecordType": "SubscriptionChange",
            "Recipient": event.get("address"),
            "ChangedAt": event["at"],
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
        }
    if kind == "suppressed":
        return _postmark_base(event) | {
            "RecordType": "SubscriptionChange",
            "Recipient": event.get("address"),
            "ChangedAt": event["at"],
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "SpamComplaint"
            if detail.get("reason") == "feedback"
            else "HardBounce",
        }
    return None


def mailgun_event(event: dict[str, Any]) -> dict[str, Any] | None:
    kind = event["type"]
    detail = event.get("detail") or {}
    reply = event.get("reply") or {}
    base: dict[str, Any] = {
        "id": event["id"],
        "timestamp": _unix(event["at"]),
        "recipient": event.get("address"),
        "tags": list(event.get("tags") or []),
        "user-variables": event.get("metadata") or {},
        "message": {"headers": {"message-id": event.get("message_id")}},
    }
    status = {
        "code": reply.get("code"),
        "message": reply.get("text", ""),
        "description": _reply_text(event),
        "attempt-no": detail.get("attempt", 1),
    }
    if kind == "accepted":
        return base | {"event": "accepted", "log-level": "info"}
    if kind == "delivered":
        return base | {"event": "delivered", "log-level": "info", "delivery-status": status}
    if kind in ("deferred", "bounced", "expired", "suppressed", "failed"):
        temporary = kind == "deferred"
        reason = {"suppressed": "suppress-bounce", "expired": "old"}.get(kind, "generic")
        return base | {
            "event": "failed",
            "log-level": "warn" if temporary else "error",
            "severity": "temporary" if temporary else "permanent",
            "reason": reason,
            "delivery-status": status,
        }
    if kind == "complained":
        return base | {"event": "complained", "log-level": "warn"}
    if kind == "unsubscribed":
        return base | {"event": "unsubscribed", "log-level": "info"}
    return None


_SHAPES = {
    WebhookFormat.SENDGRID: sendgrid_event,
    WebhookFormat.POSTMARK: postmark_event,
    WebhookFormat.MAILGUN: mailgun_event,
}


def posts(
    fmt: WebhookFormat, events: list[dict[str, Any]], *, secret: str, key_pem: bytes | None
) -> list[tuple[bytes, dict[str, str]]]:
    """The POSTs (body, headers) of ``events`` (Hato's, as JSON) for a non-Hato format; none
    when the format has no word for any of them."""
    shaped = [s for e in events if (s := _SHAPES[fmt](e)) is not None]
    if not shaped:
        return []
    if fmt is WebhookFormat.SENDGRID:
        assert key_pem is not None
        body = _json(shaped)
        timestamp = str(int(time.time()))
        return [
            (
                body,
                {
                    SENDGRID_SIGNATURE: sendgrid_signature(key_pem, timestamp, body),
                    SENDGRID_TIMESTAMP: timestamp,
                },
            )
        ]
    if fmt is WebhookFormat.POSTMARK:
        return [(_json(s), {}) for s in shaped]
    out = []
    for s in shaped:
        timestamp, token = str(int(time.time())), secrets.token_hex(25)
        signature = {
            "timestamp": timestamp,
            "token": token,
            "signature": mailgun_signature(secret, timestamp, token),
        }
        out.append((_json({"signature": signature, "event-data": s}), {}))
    return out


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
