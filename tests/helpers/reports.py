"""What comes back to Hato's bounce listener in the tests: a DSN (RFC 3464) and an ARF
complaint (RFC 5965), as a receiving system writes them."""

from __future__ import annotations


def dsn(recipient: str, status: str, text: str) -> bytes:
    """A Postfix-style delivery status notification for one failed recipient."""
    return (
        "From: MAILER-DAEMON@mx.ok.test\r\nTo: bounces\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail system\r\n\r\n"
        f"<{recipient}>: host mx.ok.test said: {text}\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.ok.test\r\n"
        f"\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {text}\r\n\r\n--B--\r\n"
    ).encode()


def arf(
    recipient: str,
    return_path: str,
    *,
    sender: str = "orders@shop.test",
    subject: str = "Order 7",
) -> bytes:
    """An abuse report about the mail to ``recipient``, naming its return path."""
    return (
        "From: fbl@isp.test\r\nTo: fbl\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain\r\n\r\nAbuse report\r\n"
        "--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"Version: 1\r\nOriginal-Rcpt-To: <{recipient}>\r\n"
        "--A\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{return_path}>\r\nFrom: {sender}\r\nTo: {recipient}\r\n"
        f"Subject: {subject}\r\n\r\n--A--\r\n"
    ).encode()
