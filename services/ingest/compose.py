"""Composing RFC 5322 / MIME messages from the JSON API, in UTF-8 or ISO-2022-JP.

Built with the standard library's compat32 email classes, which let a header be encoded in the
charset Japanese mobile carriers expect (``=?iso-2022-jp?b?...?=``) rather than always UTF-8.
ISO-2022-JP is written as CP50220 (``services/ingest/cp50220.py``): circled numbers, NEC and
IBM extension kanji (①, 髙, 﨑) in the JIS escape, as Japanese mail software writes them. The
email package encodes headers and bodies with the codec of the charset's name, so the
ISO-2022-JP parts (encoded words, text bodies, file names) are written here.
"""

from __future__ import annotations

import email.charset
import email.encoders
import email.policy
import email.utils
import urllib.parse
from base64 import b64encode
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText

from services.ingest import cp50220
from services.ingest.api_models import MessageIn, address_of

_POLICY = email.policy.compat32.clone(linesep="\r\n")

MAX_BODY_LINE = 998  # octets (RFC 5322 2.1.1); a longer ISO-2022-JP line goes as base64

# UTF-8 text as quoted-printable (readable, 8-bit safe); ISO-2022-JP is 7-bit already.
_UTF8 = email.charset.Charset("utf-8")
_UTF8.header_encoding = email.charset.BASE64
_UTF8.body_encoding = email.charset.QP


JIS = "iso-2022-jp"
_WORD_BYTES = 42  # "=?iso-2022-jp?b?" + 56 base64 characters + "?=": 74, within RFC 2047's 75


def _codec(charset: str) -> str:
    return cp50220.NAME if charset == JIS else charset


def jis_words(value: str) -> str:
    """``value`` as RFC 2047 encoded words in ISO-2022-JP (CP50220), each a whole run of
    characters with its escapes (RFC 1468: every word ends in ASCII), space-separated so that
    the header folds between them."""
    words: list[str] = []
    chunk = ""
    for char in value:
        if chunk and len(cp50220.encode(chunk + char)[0]) > _WORD_BYTES:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return " ".join(f"=?{JIS}?b?{b64encode(cp50220.encode(w)[0]).decode()}?=" for w in words if w)


def _header(value: str, charset: str) -> str | Header:
    if value.isascii():
        return value
    return jis_words(value) if charset == JIS else Header(value, _UTF8)


def _mailbox(mailbox: str, charset: str) -> str:
    name, address = email.utils.parseaddr(mailbox)
    if not name:
        return address
    if name.isascii():
        return email.utils.formataddr((name, address))
    # As encoded words of at most 76 characters each: a long name still folds (formataddr
    # would write it as one encoded word of any length).
    if charset == JIS:
        return f"{jis_words(name)} <{address}>"
    return f"{Header(name, _UTF8).encode(linesep=' ')} <{address}>"


def _text(body: str, subtype: str, charset: str) -> MIMENonMultipart:
    if charset != JIS:
        return MIMEText(body, subtype, _UTF8)
    # ISO-2022-JP goes as 7bit, unwrapped: a line too long for SMTP goes as base64.
    data = cp50220.encode(body.replace("\r\n", "\n").replace("\n", "\r\n"))[0]
    part = MIMENonMultipart("text", subtype, charset=JIS)
    part.set_payload(data)
    if any(len(line) > MAX_BODY_LINE for line in data.split(b"\r\n")):
        email.encoders.encode_base64(part)
    else:
        part["Content-Transfer-Encoding"] = "7bit"
    return part


def compose(message: MessageIn, *, message_id_domain: str, charset: str | None = None) -> bytes:
    """The message as CRLF bytes, with Date and Message-ID; Bcc never appears in it. Written
    in ``charset`` (default: the message's own; services/ingest/send.py may choose UTF-8)."""
    cs = charset or message.charset
    if message.text is not None and message.html is not None:
        body: MIMEBase = MIMEMultipart("alternative")
        body.attach(_text(message.text, "plain", cs))
        body.attach(_text(message.html, "html", cs))
    else:
        body = _text(
            message.text if message.text is not None else message.html or "",
            "plain" if message.text is not None else "html",
            cs,
        )

    inline = [a for a in message.attachments if a.content_id]
    files = [a for a in message.attachments if not a.content_id]
    if inline:
        related = MIMEMultipart("related")
        related.attach(body)
        for a in inline:
            related.attach(_attachment(a, cs, inline=True))
        body = related
    if files:
        mixed = MIMEMultipart("mixed")
        mixed.attach(body)
        for a in files:
            mixed.attach(_attachment(a, cs, inline=False))
        body = mixed

    body["From"] = _mailbox(message.from_, cs)
    if message.to:
        body["To"] = ", ".join(_mailbox(m, cs) for m in message.to)
    if message.cc:
        body["Cc"] = ", ".join(_mailbox(m, cs) for m in message.cc)
    if message.reply_to:
        body["Reply-To"] = ", ".join(_mailbox(m, cs) for m in message.reply_to)
    body["Subject"] = _header(message.subject, cs)
    body["Date"] = email.utils.formatdate(usegmt=True)
    body["Message-ID"] = email.utils.make_msgid(domain=message_id_domain)
    if "MIME-Version" not in body:
        body["MIME-Version"] = "1.0"
    for name, value in message.headers.items():
        body[name] = _header(value, cs)
    return body.as_bytes(policy=_POLICY)


def _attachment(a, charset: str, *, inline: bool) -> MIMENonMultipart:
    maintype, subtype = a.content_type.split("/", 1)
    part = MIMEBase(maintype, subtype)
    part.set_payload(a.data())
    email.encoders.encode_base64(part)
    part.add_header("Content-Disposition", "inline" if inline else "attachment")
    for key, value in _filename(a.filename, charset).items():
        # A plain name is always quoted: left bare, a name such as "*" is a token that some
        # readers (Python's among them) do not read back. RFC 2231 values are never quoted.
        part.set_param(key, value, header="Content-Disposition", requote=not key.endswith("*"))
    if inline:
        part.add_header("Content-ID", f"<{a.content_id.strip('<>')}>")
    return part


def _filename(filename: str, charset: str) -> dict[str, str]:
    """The Content-Disposition parameters naming the file: ``filename``, or for a name that is
    not ASCII RFC 2231's ``filename*`` -- in continuations (``filename*0*=utf-8''...;
    filename*1*=...``) that fold onto lines of their own when long. Each continuation holds
    whole characters, complete in itself (ISO-2022-JP's escapes included): some readers,
    Python's among them, decode the pieces one by one."""
    if filename.isascii():  # at most 255 characters: it fits a line
        return {"filename": filename}
    chunks = [""]
    for char in filename:
        if chunks[-1] and len(_quote(chunks[-1] + char, charset)) > 60:
            chunks.append("")
        chunks[-1] += char
    encoded = [_quote(chunk, charset) for chunk in chunks]
    encoded[0] = f"{charset}''{encoded[0]}"
    if len(encoded) == 1:
        return {"filename*": encoded[0]}
    return {f"filename*{i}*": piece for i, piece in enumerate(encoded)}


def _quote(text: str, charset: str) -> str:
    return urllib.parse.quote(text.encode(_codec(charset)), safe="")


def from_address(message: MessageIn) -> str:
    return address_of(message.from_)
