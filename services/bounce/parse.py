"""Reading what comes back: RFC 3464 delivery status notifications, the free-text bounces
real MTAs send (Postfix, Exim, Sendmail, qmail, Exchange, carriers ...), ARF complaint
reports (RFC 5965) and auto-replies. Classification is elsewhere (``classify``).
"""

from __future__ import annotations

import email
import email.header
import email.message
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    DSN = "dsn"  # a bounce, standard (RFC 3464) or not
    COMPLAINT = "complaint"  # an ARF feedback report
    AUTO_REPLY = "auto-reply"  # vacation / out of office: not a bounce
    NOT_A_BOUNCE = "not-a-bounce"


@dataclass(frozen=True, slots=True)
class Finding:
    """What a report says about one recipient."""

    recipient: str
    status: str = ""  # RFC 3463 code, e.g. 5.1.1
    reply_code: int | None = None  # the remote SMTP reply code, when one is given
    diagnostic: str = ""
    action: str = ""  # failed, delayed, ...
    remote_mta: str = ""
    context: str = ""  # the bounce's own text (carriers put the reason in its preamble)


@dataclass(frozen=True, slots=True)
class Report:
    kind: Kind
    findings: tuple[Finding, ...] = ()
    feedback_type: str = ""  # ARF: abuse, fraud, opt-out, ...
    return_path: str = ""  # the envelope recipient of the bounce (a VERP address) if known
    original_headers: dict[str, str] = field(default_factory=dict)


_ADDRESS = re.compile(r"<?([A-Za-z0-9._%+!#$&'*/=?^`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})>?")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"(?<![\d.])([245]\d\d)(?:[ :-]|$)")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (status|failure|has failed|notification)|failure notice|"
    r"mail delivery (failed|system)|could not be delivered|non.?delivery|rejected|"
    r"mail system error|nondeliverable|delivery problem|warning: could not send",
    re.I,
)
_AUTO_SUBJECT = re.compile(
    r"out of (the )?office|vacation|auto(matic)?[ -]?(reply|response)|^auto:|away from|"
    r"自動応答|自動返信|不在",
    re.I,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (system|subsystem)|mdaemon", re.I)
_ORIGINAL = re.compile(
    r"^-+ ?(below this line is a copy of the message|original message|"
    r"this is a copy of the message|the header of the original message).*$|"
    r"^-{2,} ?(original message follows|undelivered message follows).*$",
    re.I | re.M,
)


def parse(raw: bytes) -> Report:
    if raw.startswith(b"From "):  # an mbox "From " line
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    original = _original_headers(msg) or _inline_original(msg)

    feedback = _part(msg, "message/feedback-report")
    if feedback is not None:
        return _arf(feedback, original)

    status = _part(msg, "message/delivery-status")
    text = _human_text(msg)
    if status is not None:
        findings = _dsn(status, text)
        if findings:
            return Report(Kind.DSN, tuple(findings), original_headers=original)

    subject = _decode(msg.get("Subject", ""))
    sender = msg.get("From", "")
    if (
        _AUTO_SUBJECT.search(subject)
        or msg.get("X-Autoreply")
        or (
            (msg.get("Auto-Submitted", "").lower().startswith("auto-replied"))
            and not _BOUNCE_SUBJECT.search(subject)
            and not _DAEMON.search(sender)
        )
    ):
        rcpt = email.utils.parseaddr(sender)[1]
        return Report(
            Kind.AUTO_REPLY, (Finding(rcpt, diagnostic=subject),), original_headers=original
        )

    if (
        _BOUNCE_SUBJECT.search(subject)
        or _DAEMON.search(sender)
        or msg.get_content_type() == ("multipart/report")
    ):
        findings = _free_text(text, msg, original)
        if findings:
            return Report(Kind.DSN, tuple(findings), original_headers=original)
    return Report(Kind.NOT_A_BOUNCE, original_headers=original)


def _decode(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except Exception:
        return value


def _part(msg: email.message.Message, content_type: str) -> email.message.Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _fields(part: email.message.Message) -> list[email.message.Message]:
    """The header blocks of a message/delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, email.message.Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [email.message_from_string(b) for b in blocks if b.strip()]


def _value(field: str | None) -> str:
    """``rfc822; a@b`` → ``a@b``; folded lines joined."""
    if not field:
        return ""
    value = " ".join(str(field).split())
    return value.split(";", 1)[1].strip() if ";" in value else value


def _dsn(part: email.message.Message, text: str) -> list[Finding]:
    findings = []
    for block in _fields(part):
        rcpt = _value(block.get("Final-Recipient") or block.get("Original-Recipient"))
        rcpt = email.utils.parseaddr(rcpt)[1] or rcpt.strip("<>")
        if not rcpt or "@" not in rcpt:
            continue
        action = _value(block.get("Action")).lower()
        if action in ("delivered", "relayed", "expanded"):
            continue
        diagnostic = _value(block.get("Diagnostic-Code"))
        detail = _near(text, rcpt)
        if len(detail) > len(diagnostic) and not diagnostic:
            diagnostic = detail
        elif detail and diagnostic and detail not in diagnostic:
            diagnostic = f"{diagnostic} | {detail}"
        status = _value(block.get("Status"))
        m = _STATUS.search(status) or _STATUS.search(diagnostic)
        reply = _REPLY.search(diagnostic)
        findings.append(
            Finding(
                context=" ".join(text.split())[:2000],
                recipient=rcpt,
                status=".".join(m.groups()) if m else "",
                reply_code=int(reply.group(1)) if reply else None,
                diagnostic=diagnostic[:1000],
                action=action,
                remote_mta=_value(block.get("Remote-MTA")),
            )
        )
    return findings


def _arf(part: email.message.Message, original: dict[str, str]) -> Report:
    blocks = _fields(part)
    fields = blocks[0] if blocks else email.message.Message()
    rcpt = (
        email.utils.parseaddr(_value(fields.get("Original-Rcpt-To")))[1]
        or (email.utils.parseaddr(original.get("to", ""))[1])
    )
    return Report(
        Kind.COMPLAINT,
        (Finding(rcpt, diagnostic=_value(fields.get("Feedback-Type"))),) if rcpt else (),
        feedback_type=_value(fields.get("Feedback-Type")).lower(),
        original_headers=original,
    )


def _original_headers(msg: email.message.Message) -> dict[str, str]:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, email.message.Message):
                return {k.lower(): str(v) for k, v in inner.items()}
        if ctype == "text/rfc822-headers":
            headers = email.message_from_string(_text_of(part))
            return {k.lower(): str(v) for k, v in headers.items()}
    return {}


def _text_of(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _human_text(msg: email.message.Message) -> str:
    """The bounce's own text (not the returned message)."""
    texts = []
    for part in msg.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            break
        subtype = part.get_content_subtype()
        if part.get_content_maintype() == "text" and not subtype.startswith("rfc822"):
            text = _text_of(part)
            if subtype.startswith("html"):
                text = re.sub(r"<[^>]+>", " ", text)
            texts.append(text)
    text = "\n".join(texts)
    cut = _ORIGINAL.search(text)
    return text[: cut.start()] if cut else text


def _inline_original(msg: email.message.Message) -> dict[str, str]:
    """Headers of a returned message copied into the bounce's text after a marker line."""
    for part in msg.walk():
        if part.get_content_maintype() != "text":
            continue
        text = _text_of(part)
        cut = _ORIGINAL.search(text)
        if cut:
            headers = email.message_from_string(text[cut.end() :].lstrip("\r\n"))
            return {k.lower(): str(v) for k, v in headers.items()}
    return {}


def _near(text: str, address: str, span: int = 600) -> str:
    """The line that mentions ``address`` and what follows it: usually the server's reply."""
    i = text.lower().find(address.lower())
    if i < 0:
        return ""
    line_start = text.rfind("\n", 0, i) + 1
    before = text[line_start:i]
    chunk = text[i + len(address) : i + len(address) + span]
    chunk = re.split(r"\n\s*\n\s*\n|\n\s*<?[^\s@<>]+@[^\s@<>]+>?:?\s*\n", chunk)[0]
    before = before.strip(" \t<(") if len(before) < 200 else ""
    return " ".join(f"{before} {chunk.replace('>:', ' ')}".split()).strip(" :>")


def _free_text(text: str, msg: email.message.Message, original: dict[str, str]) -> list[Finding]:
    own = {email.utils.parseaddr(msg.get(h, ""))[1].lower() for h in ("From", "To")}
    own |= {email.utils.parseaddr(original.get("from", ""))[1].lower()}
    seen: dict[str, Finding] = {}
    for m in _ADDRESS.finditer(text):
        address = m.group(1).strip(".")
        lowered = address.lower()
        if lowered in own or lowered in seen or _DAEMON.search(lowered):
            continue
        detail = _near(text, address)
        status = _STATUS.search(detail)
        reply = _REPLY.search(detail)
        if not (
            status
            or reply
            or re.search(
                r"unknown|not exist|invalid|full|reject|"
                r"denied|refused|fail|disabled|quota|account|delivery error|"
                r"expired|unreachable|not reachable|error",
                detail,
                re.I,
            )
        ):
            continue
        seen[lowered] = Finding(
            recipient=address,
            status=".".join(status.groups()) if status else "",
            reply_code=int(reply.group(1)) if reply else None,
            diagnostic=detail[:1000],
            action="failed",
        )
    if not seen:
        to = email.utils.parseaddr(original.get("to", ""))[1]
        if to:
            status = _STATUS.search(text)
            reply = _REPLY.search(text)
            body = " ".join(text.split())[:1000]
            seen[to.lower()] = Finding(
                recipient=to,
                status=".".join(status.groups()) if status else "",
                reply_code=int(reply.group(1)) if reply else None,
                diagnostic=body,
                action="failed",
                context=" ".join(text.split())[:2000],
            )
    return list(seen.values())
