"""Envelope address rules: what a relay accepts as a mailbox (RFC 5321 4.1.2, strictly).

Anything a relay trick hides behind — source routes, ``%`` and ``!`` paths,
quoted local parts, unqualified or literal domains — is refused here.
"""

from __future__ import annotations

import re

LOCAL_PART_MAX = 64  # RFC 5321 4.5.3.1.1
DOMAIN_MAX = 255  # RFC 5321 4.5.3.1.2

# RFC 5322 3.2.3 atext without '%' and '!' (the percent hack and bang paths).
_ATEXT = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]"
_LOCAL = re.compile(_ATEXT + r"+(?:\." + _ATEXT + r"+)*")
_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
_DOMAIN = re.compile(_LABEL + r"(?:\." + _LABEL + r")+")


def split(address: str) -> tuple[str, str] | None:
    """``(local, domain)`` of an acceptable mailbox, with the domain lower-cased; else None."""
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL.fullmatch(local) or len(local) > LOCAL_PART_MAX:
        return None
    if not _DOMAIN.fullmatch(domain) or len(domain) > DOMAIN_MAX:
        return None
    return local, domain.lower()
