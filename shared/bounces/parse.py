"""Reading what comes back: RFC 3464 delivery status notifications (of any origin), the
free-text bounces real MTAs send (Postfix, Sendmail, Exim, qmail, Courier, Exchange, Domino,
the Japanese carriers ...), Amazon SES notifications (JSON), ARF complaint reports (RFC 5965,
also forwarded or nested), RFC 3834 auto-replies and delivery notifications. Each becomes a
``Report`` with one ``Finding`` per recipient; classification is elsewhere (``classify``).

Japanese bounces arrive in ISO-2022-JP or Shift_JIS, often with the charset undeclared, and
diagnostics may be quoted-printable or base64 inside the report: text is decoded before it is
read.

Hostile input costs little: every pattern runs in linear time (no nested quantifiers, address
and tag patterns that can only start at the start of a run), and what is read is capped
(``MAX_*`` below) — the bytes, the MIME containers the email package recurses into, the parts
and depth walked, the bounce's own text, the DSN blocks and the addresses considered. Past a
cap the rest is ignored, never an error: ``parse`` raises ``NotMail`` and nothing else.
"""

from __future__ import annotations

import codecs
import email
import email.header
import email.message
import email.policy
import email.utils
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum

# What is read of a report. A bounce's own text and its delivery-status part come before the
# returned original, so the caps cut what matters least.
MAX_BYTES = 2 * 1024 * 1024  # of the raw message
MAX_CONTAINERS = 64  # multipart and message parts: the email package parses them recursively
MAX_PARTS = 256  # MIME parts walked
MAX_DEPTH = 16  # MIME nesting walked
MAX_TEXT = 64 * 1024  # characters of the bounce's own text (and of each DSN report) scanned
MAX_BLOCKS = 1000  # recipient blocks of a delivery-status report
MAX_ADDRESSES = 200  # distinct addresses a free-text bounce is read for
MAX_HEADERS = 200  # header fields kept of the original message
MAX_HEADER = 4096  # characters of a header value decoded
MAX_DIAGNOSTIC = 2000  # characters of a diagnostic kept


class NotMail(ValueError):
    """Raised by ``parse`` for input that is not an RFC 5322 message (no header fields)."""


class Kind(StrEnum):
    DSN = "dsn"  # a bounce, standard (RFC 3464) or not
    COMPLAINT = "complaint"  # an ARF feedback report
    AUTO_REPLY = "auto-reply"  # vacation / out of office (RFC 3834): not a bounce
    DELIVERED = "delivered"  # a success notification (DSN action delivered, SES Delivery)
    NOT_A_BOUNCE = "not-a-bounce"


@dataclass(frozen=True, slots=True)
class Finding:
    """What a report says about one recipient."""

    recipient: str
    status: str = ""  # RFC 3463 code, e.g. 5.1.1
    reply_code: int | None = None  # the remote SMTP reply code, when one is given
    diagnostic: str = ""
    action: str = ""  # failed, delayed, delivered ...
    remote_mta: str = ""
    context: str = ""  # the bounce's own text (carriers put the reason in its preamble)
    command: str = ""  # the SMTP command the remote host refused: CONN, HELO, MAIL, RCPT, DATA
    diagnostic_type: str = ""  # SMTP, X-UNIX, X-POSTFIX ... (RFC 3464 diagnostic-type)
    hint: str = ""  # a reason the format itself names (SES bounce sub-types ...)


@dataclass(frozen=True, slots=True)
class Report:
    kind: Kind
    findings: tuple[Finding, ...] = ()
    feedback_type: str = ""  # ARF: abuse, fraud, opt-out, ...
    return_path: str = ""  # the envelope recipient of the bounce (a VERP address) if known
    original_headers: dict[str, str] = field(default_factory=dict)


_ADDRESS = re.compile(
    r"(?<![\w.%+!#$&'*/=?^`{|}~-])"  # only where a run of address characters starts: linear
    r"([A-Za-z0-9._%+!#$&'*/=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
)
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPLY = re.compile(r"(?<![\w.#=-])([45][0-5]\d)(?:[ :,-]|$)")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|return(ed)? to sender|"
    r"delivery (status|failure|has failed|notification|report|problem|error|failed)|"
    r"failure notice|mail delivery (failed|system|failure)|could not be delivered|"
    r"non.?delivery|not delivered|rejected|mail system error|"
    r"nondeliverable|delivery problem|warning: could not send|mail failure|"
    r"delivery final failure|permanent error|failed delivery|message you sent|"
    r"error sending message|unable to deliver|delayed mail|delivery delayed|"
    r"配信(不能|エラー|失敗)|送信(エラー|失敗)|不達|エラーメール|返送",
    re.I,
)
_AUTO_SUBJECT = re.compile(
    r"out of (the )?office|vacation|auto(matic|matische)?[ -]?(reply|response|antwort)|^auto:|"
    r"away from|on leave|abwesen|absence|absent|r[ée]ponse automatique|respuesta autom|"
    r"risposta automatica|自動応答|自動返信|自動送信|不在",
    re.I,
)
_DAEMON = re.compile(
    r"mailer-daemon|postmaster|mail delivery (system|subsystem)|mdaemon|mail\.delivery|"
    r"post_master|no-?reply@.*(amazonses|sns\.amazonaws)|double-bounce|bounce[s]?@",
    re.I,
)
# Where a bounce's own text ends and the returned message begins.
_ORIGINAL = re.compile(
    r"^[ \t]*[-=_]{2,}[ \t]*(below this line is a copy of the message|original message|"
    r"this is a copy of (the|your) message|the header of the original message|"
    r"original message follows|undelivered message follows|unsent message below|"
    r"returned message|message text follows|original mail|copy of the message).*$|"
    r"^[ \t]*(original message follows|--- ?below this line is a copy|"
    r"------ this is a copy of your message|content-description: undelivered message|"
    r"original mail as follows|------ ?original message ?------|-+ ?original mail info).*$",
    re.I | re.M,
)
_CHARSETS = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "ms932": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "iso-2022-jp-1": "iso2022_jp_ext",
    "csiso2022jp": "iso2022_jp_ext",
    "euc-jp": "euc_jp",
    "x-euc-jp": "euc_jp",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
}
_REPORT_TYPES = re.compile(
    rb"(?im)^(content-type:[ \t]*)message/(global-)?(delivery-status|feedback-report)"
)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_CONTAINER = re.compile(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?(?:multipart|message)/")
_SKIP = frozenset({"message/rfc822", "text/rfc822-headers", "message/partial"})


def parse(raw: bytes) -> Report:
    """The report a returned message makes: kind, one finding per recipient, the original's
    headers. Raises ``NotMail`` when the input has no header fields at all."""
    raw = _capped(_mail(raw))
    # The email package parses message/delivery-status itself, before any transfer decoding:
    # read report parts as text so quoted-printable and base64 reports decode like any text.
    raw = _REPORT_TYPES.sub(rb"\1text/x-\3", raw)
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)

    feedback = _arf(msg) or _jmrp(msg) or _unsubscribe(msg)
    if feedback is not None:
        return feedback

    ses = _ses(msg)
    if ses is not None:
        return ses

    text = _human_text(msg)
    original = _original_headers(msg) or _inline_original(msg)
    status = [_text_of(p) for p in _walk(msg) if p.get_content_type() == "text/x-delivery-status"]
    if not status:  # DSN fields in a report whose MIME structure is broken or missing
        fields = re.search(r"(?im)^(Original-Recipient|Final-Recipient):.*@", text)
        if fields and re.search(r"(?im)^(Action|Status):", text[fields.start() :]):
            start = text.rfind("\n\n", 0, fields.start())
            status = [text[start + 1 if start >= 0 else 0 :]]
    if status:
        findings = [_gmail_state(f) for p in status for f in _dsn(p, text)]
        failed = [f for f in findings if f.action not in ("delivered", "relayed", "expanded")]
        if failed:
            return Report(Kind.DSN, tuple(failed), original_headers=original)
        if findings:
            return Report(Kind.DELIVERED, tuple(findings), original_headers=original)

    subject = _header(msg, "Subject")
    fml = _fml(msg, subject, text)
    if fml is not None:
        return Report(Kind.DSN, (fml,), original_headers=original)
    sender = _header(msg, "From")
    bounceish = bool(
        _BOUNCE_SUBJECT.search(subject)
        or _DAEMON.search(sender)
        or _DAEMON.search(_header(msg, "Return-Path"))
        or msg.get_content_type() == "multipart/report"
        or _header(msg, "X-Failed-Recipients")
    )
    if not bounceish and _auto_reply(msg, subject):
        rcpt = email.utils.parseaddr(sender)[1]
        return Report(
            Kind.AUTO_REPLY, (Finding(rcpt, diagnostic=subject),), original_headers=original
        )
    if bounceish or _bounce_text(text):
        findings = _free_text(text, msg, original)
        if findings and _GOOGLE_GROUPS.search(text):
            # Google Groups refuses a post (no such group, no permission), in the poster's
            # language; Sisimai files every such notice under Rejected.
            findings = [_with_hint(f, "rejected") for f in findings]
        if findings and _IMAIL.search(_header(msg, "X-Mailer")):
            findings = [_imail(f) for f in findings]
        findings = [_gmail_state(f) for f in findings]
        if findings:
            return Report(Kind.DSN, tuple(findings), original_headers=original)
    return Report(Kind.NOT_A_BOUNCE, original_headers=original)


# -- reading a message ----------------------------------------------------------------------


def _mail(raw: bytes) -> bytes:
    if raw.startswith(b"From "):  # an mbox "From " line
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    head = raw.lstrip(b"\r\n")[:2000]
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not first or b"\x00" in first or not _HEADER_LINE.match(first):
        raise NotMail("no RFC 5322 header fields at the start: not an email message")
    return raw


def _capped(raw: bytes) -> bytes:
    """The first ``MAX_BYTES``, cut before the container past ``MAX_CONTAINERS`` (the email
    package parses nested parts recursively: 1,000 levels would exhaust the stack)."""
    raw = raw[:MAX_BYTES]
    for n, m in enumerate(_CONTAINER.finditer(raw)):
        if n == MAX_CONTAINERS:
            return raw[: m.start()]
    return raw


def _codec(charset: str | None) -> str:
    """A text codec's name for a declared charset, or "" (unknown, not text, or nonsense)."""
    if not charset:
        return ""
    name = charset.strip().strip('"').lower()
    name = _CHARSETS.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):  # ValueError: a NUL in the name
        return ""
    # idna and punycode are for host names, the bytes-to-bytes codecs are not text at all.
    if not info._is_text_encoding or info.name in ("idna", "punycode"):
        return ""
    return info.name


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Bytes → text, trusting the declared charset first, then ISO-2022-JP escapes, UTF-8,
    Shift_JIS and EUC-JP (Japanese bounces often declare nothing, or the wrong thing)."""
    candidates = []
    if b"\x1b$" in data or b"\x1b(" in data:
        candidates.append("iso2022_jp_ext")
    if _codec(charset):
        candidates.append(_codec(charset))
    candidates += ["utf-8", "cp932", "euc_jp"]
    for name in candidates:
        try:
            return data.decode(name)
        except (LookupError, UnicodeError, ValueError):
            continue
    return data.decode("latin-1")


def _decode_words(value: str) -> str:
    """A header value with RFC 2047 encoded words (and raw 8-bit bytes) → text."""
    value = value[:MAX_HEADER]
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = decode_bytes(value.encode("ascii", "surrogateescape"))
    if "=?" not in value:
        return value
    try:
        out = []
        for chunk, charset in email.header.decode_header(value):
            if isinstance(chunk, bytes):
                out.append(decode_bytes(chunk, charset))
            else:
                out.append(chunk)
        return "".join(out)
    except Exception:
        return value


def _header(msg: email.message.Message, name: str) -> str:
    """A header field as text, whatever it holds (a field with 8-bit bytes is a ``Header``
    object in the email package, not a string)."""
    value = msg.get(name)
    return _decode_words(str(value)) if value is not None else ""


def _charset(part: email.message.Message) -> str | None:
    try:
        return part.get_content_charset()
    except (LookupError, UnicodeError, ValueError):
        return None


def _payload(part: email.message.Message) -> list | str:
    """The parts of a container, or a leaf's text as the email package reads it (which
    decodes 8-bit text with the declared charset, whatever that names)."""
    if part.is_multipart():
        return part.get_payload()
    try:
        return part.get_payload()
    except (LookupError, UnicodeError, ValueError):
        return ""


def _text_of(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        raw = _payload(part)
        return raw if isinstance(raw, str) else ""
    return decode_bytes(payload, _charset(part))


def _filename(part: email.message.Message) -> str | None:
    try:
        return part.get_filename()
    except (LookupError, UnicodeError, ValueError):  # an RFC 2231 charset that is no codec
        return "unreadable"


def _walk(msg: email.message.Message, *, into_originals: bool = False):
    """Parts depth first, at most ``MAX_PARTS`` of them ``MAX_DEPTH`` deep; returned originals
    (message/rfc822) are not entered unless asked."""
    stack = [(msg, 0)]
    walked = 0
    while stack and walked < MAX_PARTS:
        part, depth = stack.pop()
        walked += 1
        yield part
        if depth >= MAX_DEPTH or (part.get_content_type() in _SKIP and not into_originals):
            continue
        payload = _payload(part)
        if isinstance(payload, list):
            inner = [p for p in payload[:MAX_PARTS] if isinstance(p, email.message.Message)]
            stack.extend((p, depth + 1) for p in reversed(inner))


def _human_text(msg: email.message.Message) -> str:
    """The bounce's own text (not the returned message)."""
    texts = []
    for part in _walk(msg):
        ctype = part.get_content_type()
        if part.is_multipart() or ctype in _SKIP:
            continue
        if part.get_content_maintype() == "multipart":  # a boundary the parser could not find
            texts.append(_text_of(part))
            continue
        if part.get_content_maintype() != "text":
            continue
        if ctype in ("text/x-delivery-status", "text/x-feedback-report"):
            continue
        if _filename(part) and not ctype.startswith("text/plain"):
            continue
        text = _text_of(part)[:MAX_TEXT]
        if part.get_content_subtype().startswith("html"):
            text = _html_to_text(text)
        texts.append(text)
        if sum(map(len, texts)) >= MAX_TEXT:
            break
    text = "\n".join(texts)[:MAX_TEXT]
    cut = _ORIGINAL.search(text)
    return text[: cut.start()] if cut and cut.start() > 0 else text


_SCRIPT = re.compile(r"<(script|style)\b", re.I)


def _html_to_text(text: str) -> str:
    # Scripts and styles out, by finding each end once (a lazy ".*?</script>" rescans the rest
    # of the text for every unclosed tag: quadratic).
    lowered, kept, pos = text.lower(), [], 0
    while (m := _SCRIPT.search(lowered, pos)) is not None:
        kept.append(text[pos : m.start()])
        end = lowered.find(f"</{m.group(1).lower()}", m.end())
        if end < 0:
            pos = len(text)
            break
        close = lowered.find(">", end)
        pos = close + 1 if close >= 0 else len(text)
    kept.append(text[pos:])
    text = " ".join(kept)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>", "\n", text)
    text = re.sub(r"<[^<>]*>", " ", text)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"), ("&nbsp;", " ")):
        text = text.replace(entity, char)
    return text


def _headers_dict(msg: email.message.Message) -> dict[str, str]:
    return {k.lower(): _decode_words(str(v)) for k, v in msg.items()[:MAX_HEADERS]}


def _original_headers(msg: email.message.Message) -> dict[str, str]:
    for part in _walk(msg):
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = _payload(part)
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, email.message.Message):
                return _headers_dict(inner)
        if ctype == "text/rfc822-headers":
            return _headers_dict(email.message_from_string(_text_of(part)[:MAX_TEXT].lstrip()))
    return {}


def _inline_original(msg: email.message.Message) -> dict[str, str]:
    """Headers of a returned message copied into the bounce's text after a marker line."""
    for part in _walk(msg):
        if part.get_content_maintype() != "text" or part.get_content_type() in _SKIP:
            continue
        text = _text_of(part)[:MAX_TEXT]
        cut = _ORIGINAL.search(text)
        if cut:
            rest = text[cut.end() :].lstrip("\r\n")
            rest = "\n".join(line.strip() for line in rest.splitlines())  # indented copies
            headers = email.message_from_string(rest)
            found = _headers_dict(headers)
            if any(k in found for k in ("from", "to", "subject", "message-id", "date")):
                return found
    return {}


# -- RFC 3464 ------------------------------------------------------------------------------


def _blocks(text: str) -> list[email.message.Message]:
    """The header blocks of a delivery-status or feedback-report body."""
    text = text[:MAX_BYTES].replace("\r\n", "\n").strip()
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()][:MAX_BLOCKS]
    return [email.message_from_string(b.strip("\n") + "\n") for b in blocks]


def _value(field: str | None) -> str:
    """``rfc822; a@b`` → ``a@b``; folded lines joined; encoded words decoded."""
    if not field:
        return ""
    value = " ".join(_decode_words(str(field)).split())
    return value.split(";", 1)[1].strip() if ";" in value else value


def _type(field: str | None) -> str:
    value = " ".join(str(field or "").split())
    return value.split(";", 1)[0].strip().upper() if ";" in value else ""


def _address(value: str) -> str:
    value = value.strip().strip("<>").strip()
    found = _ADDRESS.search(value)
    return found.group(1).strip(".") if found else ""


_STATUS_COMMENT = re.compile(r"\(([^()]{3,300})\)")
_GENERIC_COMMENT = re.compile(
    r"(?:permanent|temporary|transient|persistent)(?: \w+)? failure", re.I
)


def _dsn(report: str, text: str) -> list[Finding]:
    findings = []
    context = _squash(text[:4000])[:2000]
    lowered = text.lower()
    for block in _blocks(report):
        rcpt = _address(_value(block.get("Final-Recipient"))) or _address(
            _value(block.get("Original-Recipient"))
        )
        if not rcpt:
            if block.get("Final-Recipient") or block.get("Original-Recipient"):
                rcpt = _value(block.get("Final-Recipient") or block.get("Original-Recipient"))
            else:
                continue
        action = (_value(block.get("Action")).lower().split() or [""])[0]
        diagnostic = _value(block.get("Diagnostic-Code"))[:MAX_DIAGNOSTIC]
        dtype = _type(block.get("Diagnostic-Code"))
        detail = _near(text, rcpt, lowered=lowered) if "@" in rcpt else ""
        status = prefer_status(_value(block.get("Status")), diagnostic or detail)
        # RFC 3464 2.3.4 lets the Status field carry a comment: with no Diagnostic-Code it is
        # the only word on this recipient ("4.0.0 (cat.example: host name lookup failure)").
        comment = _STATUS_COMMENT.search(block.get("Status") or "")
        said = " ".join(comment.group(1).split()) if comment else ""
        if not diagnostic and said and not _GENERIC_COMMENT.fullmatch(said):
            diagnostic = said[:MAX_DIAGNOSTIC]
        if not _informative(diagnostic):
            if detail and detail not in diagnostic:
                diagnostic = f"{diagnostic} {detail}".strip()
            elif not diagnostic and not detail:
                diagnostic = _error_lines(text)
        command = find_command(diagnostic) or find_command(detail)
        reply = _REPLY.search(diagnostic)
        findings.append(
            Finding(
                recipient=rcpt,
                status=status,
                reply_code=int(reply.group(1)) if reply else None,
                diagnostic=diagnostic[:1000],
                action=action,
                remote_mta=_value(block.get("Remote-MTA"))[:255],
                context=context,
                command=command,
                diagnostic_type=dtype,
                hint=_POWERMTA_CATEGORIES.get(
                    _value(block.get("X-PowerMTA-BounceCategory")).lower(), ""
                ),
            )
        )
    return findings


# PowerMTA files each bounce under a category (X-PowerMTA-BounceCategory, its "bounce
# categories" table): the ones that name one reason, as Sisimai's PowerMTA module reads them.
# The broad ones (policy-related, routing-errors, other ...) leave the reply to the rules.
_POWERMTA_CATEGORIES = {
    "bad-mailbox": "userunknown",
    "bad-domain": "hostunknown",
    "inactive-mailbox": "suspend",
    "quota-issues": "mailboxfull",
    "message-expired": "expired",
    "spam-related": "spamdetected",
    "virus-related": "virusdetected",
}


def prefer_status(field_value: str, diagnostic: str) -> str:
    """The enhanced status code: the Status field, unless it says only the reporting MTA's
    own generic word (X.0.0, X.Y.0, or X.4.7 "delivery time expired") and the remote reply
    quotes a precise code of the same class (``5.1.0 - Unknown address error 550-'5.2.2 ...
    Mailbox Full'``), or the field says X.0.0 and the reply any other code of its class.
    No field at all: the reply's code."""
    m = _STATUS.search(field_value)
    status = ".".join(m.groups()) if m else ""
    codes = [".".join(d.groups()) for d in _STATUS.finditer(diagnostic or "")][:8]
    found = codes[0] if codes else ""
    if not status:
        return found
    if status.endswith(".0") or status[1:] == ".4.7":
        for code in codes:
            if code[0] == status[0] and code != status and not code.endswith(".0"):
                return code
    if found and status.endswith(".0.0") and found[0] == status[0] and found != status:
        return found
    return status


def _informative(diagnostic: str) -> bool:
    """A diagnostic with words in it, not only a code."""
    return len(re.sub(r"[\d.#<>()\[\];:,\s-]+|smtp", "", diagnostic, flags=re.I)) >= 6


# -- SMTP commands --------------------------------------------------------------------------

_COMMANDS = (
    (
        re.compile(r"end of data|after data|data command|>>> ?data\b|\bDATA\b|message body", re.I),
        "DATA",
    ),
    (re.compile(r"rcpt to|rcpt command|>>> ?rcpt\b|\bRCPT\b", re.I), "RCPT"),
    (re.compile(r"mail from|mail command|>>> ?mail\b|\bMAIL F", re.I), "MAIL"),
    (re.compile(r"\b(ehlo|helo)\b", re.I), "HELO"),
    (
        re.compile(r"initial connection|greeting|banner|connect(ed|ing)? to|after connect", re.I),
        "CONN",
    ),
    (re.compile(r"\bSTARTTLS\b|starttls command", re.I), "STARTTLS"),
)
_QMAIL = (
    (re.compile(r"does not like recipient|didn.t accept the recipient", re.I), "RCPT"),
    (re.compile(r"sender was rejected|didn.t like the sender", re.I), "MAIL"),
    (re.compile(r"failed after I sent the message|didn.t accept the message", re.I), "DATA"),
    (re.compile(r"\[RCPT_TO\]", re.I), "RCPT"),
    (re.compile(r"\[(BODY|DATA)\]"), "DATA"),
    (re.compile(r"\[MAIL_FROM\]", re.I), "MAIL"),
)
_IN_REPLY = re.compile(
    r"(?:in reply to|after|while sending|error after|refused at|during|response to|"
    r"smtp:|>>>)\s*(?:the\s+)?(end of data|data|rcpt(?: to)?|mail(?: from)?|ehlo|helo|"
    r"initial connection|starttls|connect)",
    re.I,
)


def find_command(text: str) -> str:
    """The SMTP command a diagnostic says the remote host answered (Postfix's "in reply to
    RCPT TO command", Exim's "after RCPT TO:", Sendmail's ">>> DATA" ...)."""
    if not text:
        return ""
    for pattern, name in _QMAIL:
        if pattern.search(text):
            return name
    m = None
    for m in _IN_REPLY.finditer(text):  # noqa: B007 - the last mention is the one answered
        pass
    if m is not None:
        word = m.group(1).lower()
        if "data" in word:
            return "DATA"
        if word.startswith("rcpt"):
            return "RCPT"
        if word.startswith("mail"):
            return "MAIL"
        if word in ("ehlo", "helo"):
            return "HELO"
        if word == "starttls":
            return "STARTTLS"
        return "CONN"
    for pattern, name in _COMMANDS[:3]:
        if pattern.search(text) and name != "DATA":
            return name
    if re.search(r"\bDATA\b", text):
        return "DATA"
    return ""


# -- free-text bounces ----------------------------------------------------------------------

_EVIDENCE = re.compile(
    r"unknown|malformed|not exist|no such|invalid|full|quota|reject|denied|refused|fail|disabled|"
    r"suspend|inactive|account|delivery error|expired|unreachable|not reachable|error|"
    r"blocked|not found|not accept|unavailable|too (large|big|many)|timed? ?out|"
    r"could not|couldn.t|unable|permanent|undeliverable|spam|virus|policy|bounced|unrout|"
    r"not (listed|allowed|permitted|valid|available)|permission|exceed|limit|no longer|"
    r"blacklist|blocklist|"
    r"ありません|存在しません|拒否|エラー|送信できません|届きません|受信|容量|"
    r"[245]\.\d{1,3}\.\d{1,3}|\b[45]\d\d\b",
    re.I,
)
_BOUNCE_TEXT = re.compile(
    r"could not be delivered|couldn.t be delivered|was not delivered|undeliverable|"
    r"delivery (to the following|has failed|failed)|permanent(ly)? (fatal )?error|"
    r"following (address(es)?|recipient\(?s?\)?) (had|failed)|did not reach|"
    r"returned to (the )?sender|unable to deliver|message delivery failed|"
    r"this is the mail system at|mail delivery subsystem|"
    r"送信できませんでした|届きませんでした|配信できませんでした|配送できませんでした|"
    r"宛先.{0,20}(見つかりません|存在しません)",
    re.I,
)


# Gmail's older bounces name the SMTP state in which the remote host refused: "Google tried to
# deliver your message, but it was rejected by the recipient domain. ... 554 5.7.0 Header
# error (state 18)." The state gives the command, and, as Sisimai's Gmail module reads it, the
# reason when the status code names no precise one (X.0.X or none): refused after DATA is the
# recipient's filter.
_GMAIL_STATE = re.compile(r"\(state (\d+)\)\.")
_GMAIL_STATES = {
    "6": ("MAIL", "systemerror"),  # 500 Remote server does not support TLS
    "8": ("", "systemerror"),  # AUTH failed with the remote server
    "9": ("", "systemerror"),
    "12": ("", "norelaying"),  # 500 Remote server does not support SMTP Authenticated Relay
    "13": ("HELO", "blocked"),
    "14": ("RCPT", "userunknown"),
    "15": ("DATA", "filtered"),
    "17": ("DATA", "filtered"),
    "18": ("DATA", "filtered"),
}
_PRECISE_STATUS = re.compile(r"[45]\.[1-7]\.[1-9]\d*")


def _gmail_state(finding: Finding) -> Finding:
    m = _GMAIL_STATE.search(finding.diagnostic)
    if m is None or m.group(1) not in _GMAIL_STATES:
        return finding
    if "google tried to deliver" not in f"{finding.diagnostic} {finding.context}".lower():
        return finding
    command, reason = _GMAIL_STATES[m.group(1)]
    precise = _PRECISE_STATUS.fullmatch(finding.status)
    fields = {k: getattr(finding, k) for k in Finding.__slots__}
    return Finding(**{**fields, "command": command, "hint": "" if precise else reason})


_GOOGLE_GROUPS = re.compile(r"https?://groups\.google\.com/support", re.I)

# fml (a Japanese mailing-list manager) answers a post it refuses with a notice of its own,
# marked by its X-MLServer header: not a member, a loop, a security alert. No status code.
# Ipswitch/Progress IMail Server (X-Mailer: <SMTP32 vN>) writes one line per recipient and no
# status code; the reason is in its fixed wording, which Sisimai's IMailServer module tables.
_IMAIL = re.compile(r"^<SMTP32 v", re.I)
_IMAIL_REASONS = (
    (re.compile(r"unknown host", re.I), "hostunknown"),
    (re.compile(r"unknown user|invalid final delivery userid", re.I), "userunknown"),
    (re.compile(r"user mailbox exceeds allowed size", re.I), "mailboxfull"),
    (re.compile(r"virus detected", re.I), "virusdetected"),
    (re.compile(r"blacklisted url in message", re.I), "spamdetected"),
    (re.compile(r"delivery failed ", re.I), "expired"),
)


def _imail(finding: Finding) -> Finding:
    """An IMail Server finding with the reason its wording names, if it names one."""
    for pattern, reason in _IMAIL_REASONS:
        if pattern.search(finding.diagnostic):
            return _with_hint(finding, reason)
    return finding


_FML = (
    (
        re.compile(
            r"\b(?:are|is) not (?:a )?member|not member article|only members can post|"
            r"reject mail |spam mail from a spammer is rejected",
            re.I,
        ),
        "rejected",
    ),
    (re.compile(r"security alert", re.I), "securityerror"),
    (
        re.compile(
            r"fml system error|loop alert|loop back warning|unix from loop|"
            r"duplicated message-id",
            re.I,
        ),
        "systemerror",
    ),
)


def _fml(msg: email.message.Message, subject: str, text: str) -> Finding | None:
    """A refusal notice from fml, about the list address it names, or None."""
    if "fml" not in _header(msg, "X-MLServer").lower():
        return None
    notice = re.split(r"(?im)^(?:original mail as follows|> ?(?:return-path|from):)", text)[0]
    for pattern, reason in _FML:
        m = pattern.search(subject) or pattern.search(notice)
        if m is None:
            continue
        found = _ADDRESS.search(notice)
        if found is None:
            return None
        line = next((ln for ln in notice.splitlines() if pattern.search(ln)), subject)
        return Finding(
            found.group(0).lower(),
            action="failed",
            diagnostic=" ".join(line.split()),
            context=_squash(notice)[:2000],
            hint=reason,
        )
    return None


def _with_hint(finding: Finding, hint: str) -> Finding:
    return Finding(**{**{k: getattr(finding, k) for k in Finding.__slots__}, "hint": hint})


def _bounce_text(text: str) -> bool:
    return bool(_BOUNCE_TEXT.search(text))


def _auto_reply(msg: email.message.Message, subject: str) -> bool:
    auto = _header(msg, "Auto-Submitted").lower()
    precedence = _header(msg, "Precedence").lower()
    return bool(
        auto.startswith("auto-replied")
        or _header(msg, "X-Autoreply")
        or _header(msg, "X-Autorespond")
        or (
            _header(msg, "X-Auto-Response-Suppress").lower() == "all"
            and _AUTO_SUBJECT.search(subject)
        )
        or precedence == "auto_reply"
        or _AUTO_SUBJECT.search(subject)
    )


def _squash(text: str) -> str:
    return " ".join(text.split())


_MENTIONS = 16  # mentions of one address tried, at most


def _near(text: str, address: str, span: int = 700, lowered: str | None = None) -> str:
    """The line that mentions ``address`` and what follows it: usually the server's reply.
    ``lowered`` is ``text.lower()``, when the caller has it."""
    lowered = text.lower() if lowered is None else lowered
    needle = address.lower()
    i = lowered.find(needle)
    if i < 0:
        return ""
    # Prefer a mention followed by something (a transcript names the address twice).
    for _ in range(_MENTIONS):
        after = text[i + len(address) : i + len(address) + span]
        following = lowered.find(needle, i + 1)
        if _EVIDENCE.search(after.split("\n\n\n")[0]) or following < 0:
            break
        i = following
    line_start = text.rfind("\n", max(0, i - 201), i) + 1
    before = text[max(line_start, i - 200) : i]
    chunk = text[i + len(address) : i + len(address) + span]
    # The reply ends at a blank gap, a rule line, or a line that starts with another address.
    chunk = re.split(r"\n\s*\n\s*\n|\n[ \t]*[-=_]{5,}[ \t]*(?=\n|$)", chunk)[0]
    for m in re.finditer(r"\n[ \t]*<?([^\s@<>:]+@[A-Za-z0-9.-]*[A-Za-z0-9])>?[\s:.,]", chunk):
        if m.group(1).lower() != address.lower():
            chunk = chunk[: m.start()]
            break
    before = before.strip(" \t<(*") if len(before) < 200 else ""
    return _squash(f"{before} {chunk.replace('>:', ' ')}").strip(" :>")


def _error_lines(text: str) -> str:
    """The lines of a bounce that carry the error: reply codes and error words."""
    keep, size = [], 0
    for line in text.splitlines():
        line = line.strip()[:1000]
        if line and (_STATUS.search(line) or _CODE_IN_LINE.search(line) or _EVIDENCE.search(line)):
            keep.append(line)
            size += len(line) + 1
            if size > 1000:
                break
    return _squash(" ".join(keep))[:1000]


_CODE_IN_LINE = re.compile(r"(^|\s|<<< ?)[45]\d\d[\s-]")


_SENDER_LINE = re.compile(
    r"^[ \t]*(from|mail from|sender|reply-to|return-path|message-id)[ \t]*:", re.I
)


def _free_text(text: str, msg: email.message.Message, original: dict[str, str]) -> list[Finding]:
    own = {email.utils.parseaddr(_header(msg, h))[1].lower() for h in ("From", "To", "Reply-To")}
    own |= {email.utils.parseaddr(original.get("from", ""))[1].lower()}
    own |= {email.utils.parseaddr(_header(msg, "Return-Path"))[1].lower()}
    own.discard("")
    context = _squash(text[:4000])[:2000]
    addresses: list[str] = []
    failed = _header(msg, "X-Failed-Recipients")
    if failed:
        addresses += [a.strip() for a in failed.split(",")[:MAX_ADDRESSES] if "@" in a]
    distinct: set[str] = set()
    spare: list[str] = []  # the bounce's own addresses and mailer-daemon ones, set aside
    for line in text.splitlines():
        if len(distinct) >= MAX_ADDRESSES:
            break
        if _SENDER_LINE.match(line):
            continue
        for m in _ADDRESS.finditer(line):
            if len(distinct) >= MAX_ADDRESSES:
                break
            address = m.group(1).strip(".")
            if address.lower() in own or _DAEMON.search(address):
                spare.append(address)
                continue
            addresses.append(address)
            distinct.add(address.lower())
    lowered_text = text.lower()
    seen: dict[str, Finding] = {}
    for address in addresses:
        lowered = address.lower()
        if lowered in seen:
            continue
        detail = _near(text, address, lowered=lowered_text)
        if not _EVIDENCE.search(detail):
            detail = ""
        seen[lowered] = Finding(
            recipient=address,
            diagnostic=detail,
            action="failed",
            context=context,
        )
    if not seen:
        to = email.utils.parseaddr(original.get("to", ""))[1]
        if to and to.lower() not in own:
            seen[to.lower()] = Finding(recipient=to, action="failed", context=context)
    if not seen:
        # Mail to oneself, or to a postmaster: the bounce names no other address. One of its
        # own counts when an error follows it ("<me@example.jp>: ... disk quota exceeded").
        for address in spare:
            detail = _near(text, address, lowered=lowered_text)
            if _EVIDENCE.search(detail):
                seen[address.lower()] = Finding(
                    recipient=address, diagnostic=detail, action="failed", context=context
                )
                break
    if not seen:
        return []
    # Only addresses the text says something about are recipients, unless none is.
    with_detail = [f for f in seen.values() if f.diagnostic]
    findings = with_detail if with_detail else list(seen.values())[:1]
    if len(findings) > 1:
        # An address quoted inside another's diagnostic is not a recipient of its own.
        findings = [
            f
            for f in findings
            if not any(
                f is not g
                and f.recipient.lower() in g.diagnostic.lower()[:200]
                and g.recipient.lower() not in f.diagnostic.lower()[:200]
                for g in findings
            )
        ] or findings
    errors = _error_lines(text)
    transcript = re.search(r"<<<[ \t]*([245]\d\d[^\n]*)", text)
    out = []
    for f in findings:
        diagnostic = f.diagnostic
        if len(findings) == 1 and not (_STATUS.search(diagnostic) or _REPLY.search(diagnostic)):
            if errors and errors not in diagnostic:
                diagnostic = f"{diagnostic} {errors}".strip()
        status = _STATUS.search(diagnostic)
        reply = _REPLY.search(diagnostic)
        if transcript and not reply:
            diagnostic = f"{diagnostic} {transcript.group(1)}".strip()
            reply = _REPLY.search(transcript.group(1))
            status = status or _STATUS.search(transcript.group(1))
        out.append(
            Finding(
                recipient=f.recipient,
                status=".".join(status.groups()) if status else "",
                reply_code=int(reply.group(1)) if reply else None,
                diagnostic=diagnostic[:1000],
                action="failed",
                context=context,
                command=find_command(diagnostic)
                or find_command(_near(text, f.recipient, 2000, lowered_text)),
            )
        )
    return out


# -- ARF (RFC 5965) -------------------------------------------------------------------------


def _arf(msg: email.message.Message) -> Report | None:
    """A feedback report, wherever it sits: the message itself, a part of it, or a report
    forwarded as an attachment (multipart in multipart). Non-MIME reports that carry the
    fields in their text count too."""
    container, report = None, None
    for part in _walk(msg, into_originals=True):
        if part.get_content_type() == "text/x-feedback-report":
            report = part
            break
        if part.is_multipart():
            container = part
    fields: email.message.Message | None = None
    original: dict[str, str] = {}
    if report is not None:
        blocks = _blocks(_text_of(report))
        fields = blocks[0] if blocks else email.message.Message()
        if container is not None:
            original = _original_headers_in(container)
    else:
        text = "\n".join(_text_of(p) for p in _walk(msg) if p.get_content_type() in ("text/plain",))
        m = re.search(r"(?im)^Feedback-Type:[ \t]*[\w-]+[ \t]*$", text)
        if not (m and re.search(r"(?im)^(User-Agent|Version|Original-Mail-From):", text)):
            return None
        block = re.split(r"\n[ \t]*\n", text[m.start() :].replace("\r\n", "\n"))[0]
        fields = email.message_from_string(block + "\n")
        original = _original_headers(msg) or _inline_original(msg)
    # RFC 5965 3.2: Original-Rcpt-To appears once per recipient of the original.
    rcpts = list(
        dict.fromkeys(
            a
            for v in (fields.get_all("Original-Rcpt-To") or [])[:MAX_ADDRESSES]
            if (a := _address(_value(v)))
        )
    )
    rcpt = (
        _address(_value(fields.get("Removal-Recipient")))
        or _address(original.get("x-hmxmroriginalrecipient", ""))
        or email.utils.parseaddr(original.get("to", ""))[1]
    )
    feedback_type = _value(fields.get("Feedback-Type")).lower() or "abuse"
    return _complaint(rcpts or ([rcpt] if rcpt else []), feedback_type, original)


def _complaint(rcpts: list[str], feedback_type: str, original: dict[str, str]) -> Report:
    return Report(
        Kind.COMPLAINT,
        tuple(Finding(r, diagnostic=feedback_type, action="failed") for r in rcpts),
        feedback_type=feedback_type,
        original_headers=original,
    )


def _jmrp(msg: email.message.Message) -> Report | None:
    """Microsoft's junk-mail reporting (JMRP): no feedback-report part, the reported message
    attached with the address it reached in X-HmXmrOriginalRecipient."""
    if not _JMRP_SUBJECT.search(_header(msg, "Subject")):
        return None
    for part in _walk(msg, into_originals=True):
        if part.get_content_type() != "message/rfc822":
            continue
        inner = _payload(part)
        first = inner[0] if isinstance(inner, list) and inner else None
        rcpt = _address(_header(first, "X-HmXmrOriginalRecipient")) if first else ""
        if rcpt:
            return _complaint([rcpt], "abuse", _headers_dict(first))
    return None


_JMRP_SUBJECT = re.compile(r"complaint about message from", re.I)


def _unsubscribe(msg: email.message.Message) -> Report | None:
    """Apple Mail's unsubscribe request (X-Apple-Unsubscribe: true), mailed to the
    List-Unsubscribe address from the recipient's own: an opt-out."""
    if _header(msg, "X-Apple-Unsubscribe").strip().lower() != "true":
        return None
    rcpt = email.utils.parseaddr(_header(msg, "From"))[1]
    return _complaint([rcpt] if rcpt else [], "opt-out", {})


def _original_headers_in(container: email.message.Message) -> dict[str, str]:
    payload = _payload(container)
    for part in payload if isinstance(payload, list) else []:
        if isinstance(part, email.message.Message) and part.get_content_type() in _SKIP:
            return _original_headers(part)
    return _original_headers(container)


# -- Amazon SES notifications (JSON, through SNS or as sent) --------------------------------

_SES_SUBTYPES = {
    "noemail": "userunknown",
    "suppressed": "suppressed",
    "onaccountsuppressionlist": "suppressed",
    "mailboxfull": "mailboxfull",
    "messagetoolarge": "mesgtoobig",
    "contentrejected": "contenterror",
    "attachmentrejected": "securityerror",
}


def _ses(msg: email.message.Message) -> Report | None:
    if msg.is_multipart() or msg.get_content_maintype() != "text":
        return None
    body = _text_of(msg).strip()
    if not body.startswith("{") or ("notificationType" not in body and "eventType" not in body):
        return None
    try:
        data = json.loads(body[: body.rfind("}") + 1])
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"])
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None
    if not isinstance(data, dict):
        return None
    try:
        return _ses_report(data)
    except (AttributeError, TypeError, ValueError):  # a field of the wrong JSON type
        return None


def _ses_report(data: dict) -> Report | None:
    kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
    original = {
        k.lower(): str(v)
        for k, v in (data.get("mail", {}).get("commonHeaders") or {}).items()
        if isinstance(v, str)
    }
    if kind == "bounce":
        bounce = data.get("bounce") or {}
        subtype = str(bounce.get("bounceSubType", "")).lower()
        transient = str(bounce.get("bounceType", "")).lower() == "transient"
        findings = []
        for r in bounce.get("bouncedRecipients") or []:
            diagnostic = str(r.get("diagnosticCode") or "")
            dtype = diagnostic.split(";", 1)[0].strip().upper() if ";" in diagnostic else ""
            diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic else diagnostic
            reply = _REPLY.search(diagnostic)
            status = prefer_status(str(r.get("status") or ""), diagnostic)
            if not status:
                status = "4.0.0" if transient else "5.0.0"
            findings.append(
                Finding(
                    recipient=str(r.get("emailAddress", "")),
                    status=status,
                    reply_code=int(reply.group(1)) if reply else None,
                    diagnostic=diagnostic or subtype,
                    action=str(r.get("action") or "failed").lower(),
                    remote_mta=str(bounce.get("remoteMtaIp") or ""),
                    command=find_command(diagnostic),
                    diagnostic_type=dtype,
                    hint=_SES_SUBTYPES.get(subtype, ""),
                )
            )
        return Report(Kind.DSN, tuple(findings), original_headers=original)
    if kind == "complaint":
        complaint = data.get("complaint") or {}
        feedback_type = str(complaint.get("complaintFeedbackType") or "abuse").lower()
        findings = tuple(
            Finding(str(r.get("emailAddress", "")), diagnostic=feedback_type)
            for r in complaint.get("complainedRecipients") or []
        )
        return Report(Kind.COMPLAINT, findings, feedback_type, original_headers=original)
    if kind == "delivery":
        delivery = data.get("delivery") or {}
        reply = str(delivery.get("smtpResponse") or "")
        status = _STATUS.search(reply)
        findings = tuple(
            Finding(
                str(r),
                status=".".join(status.groups()) if status else "2.0.0",
                diagnostic=reply,
                action="delivered",
            )
            for r in delivery.get("recipients") or []
        )
        return Report(Kind.DELIVERED, findings, original_headers=original)
    return None
