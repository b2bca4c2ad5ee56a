"""Classifying bounces by the data-driven rules of ``reasons.toml`` into Sisimai's reason
vocabulary (``userunknown``, ``filtered``, ``blocked``, ``mailboxfull`` ...): each finding
gets a reason, hard or soft, whether it suppresses the recipient, and whether the verdict is
ambiguous. Synchronous results from the dispatcher go through the same rules.

How a reason is found, in order (the semantics Sisimai documents):

1. a reason the report's format names itself (an SES bounce sub-type ...);
2. a 2.X.X status: ``delivered``; a delay reported in the sending MTA's own words
   (``X-Postfix; connect to ...``): ``expired``;
3. the first ``[[rules]]`` entry that matches. A rule may test the diagnostic text
   (``text`` regular expressions or named ``phrases`` lists), the status code or what the
   ``[status]`` table says it means (``status_reason``), the SMTP command the remote host
   refused, the reply code, the recipient's domain or the host that answered for it (the
   Remote-MTA, else the host the diagnostic names), and whether the status code is weak
   (says nothing or only something generic);
4. what the status code means; then its class (X.6 content, X.7 security); a delayed action
   is ``expired``; a diagnostic no rule explains is ``onhold``; nothing at all ``undefined``.

Hard or soft and the suppression policy follow from the reason and the code (``policy``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from shared.bounces.parse import Finding, Kind, Report, find_command

RULES_FILE = Path(__file__).with_name("reasons.toml")


class BounceReason(StrEnum):
    """Hato's bounce reasons: Sisimai's names (https://libsisimai.org/en/reason/), each
    described, with its hard/soft and suppression policy, in ``reasons.toml``."""

    USERUNKNOWN = "userunknown"
    HOSTUNKNOWN = "hostunknown"
    HASMOVED = "hasmoved"
    NOTACCEPT = "notaccept"
    FILTERED = "filtered"
    SUSPEND = "suspend"
    MAILBOXFULL = "mailboxfull"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"
    FEEDBACK = "feedback"
    BLOCKED = "blocked"
    BADREPUTATION = "badreputation"
    REQUIREPTR = "requireptr"
    AUTHFAILURE = "authfailure"
    SECURITYERROR = "securityerror"
    POLICYVIOLATION = "policyviolation"
    REJECTED = "rejected"
    NORELAYING = "norelaying"
    SPAMDETECTED = "spamdetected"
    VIRUSDETECTED = "virusdetected"
    CONTENTERROR = "contenterror"
    NOTCOMPLIANTRFC = "notcompliantrfc"
    MESGTOOBIG = "mesgtoobig"
    EXCEEDLIMIT = "exceedlimit"
    TOOMANYCONN = "toomanyconn"
    SPEEDING = "speeding"
    SYSTEMERROR = "systemerror"
    SYSTEMFULL = "systemfull"
    NETWORKERROR = "networkerror"
    MAILERERROR = "mailererror"
    SYNTAXERROR = "syntaxerror"
    ONHOLD = "onhold"
    UNDEFINED = "undefined"
    VACATION = "vacation"
    DELIVERED = "delivered"


DELIVERED = BounceReason.DELIVERED
FEEDBACK = BounceReason.FEEDBACK
VACATION = BounceReason.VACATION
ONHOLD = BounceReason.ONHOLD
UNDEFINED = BounceReason.UNDEFINED
NOT_BOUNCES = frozenset({DELIVERED, VACATION})  # what comes back but says nothing went wrong
POLICIES = {"at once": True, "repeated": "repeated", "never": False}


@dataclass(frozen=True, slots=True)
class Verdict:
    recipient: str
    reason: str
    hard: bool
    suppress: bool | str  # True (at once), "repeated" (after repeated soft bounces), False
    status: str
    diagnostic: str
    ambiguous: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "status": self.status,
            "reason": self.reason,
            "hard": self.hard,
            "ambiguous": self.ambiguous,
            "suppress": self.suppress,
            "diagnostic": self.diagnostic,
        }


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I) if patterns else None


@dataclass(frozen=True, slots=True)
class _Rule:
    reason: str
    text: re.Pattern[str] | None = None
    phrases: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()  # phrases that must not match
    not_text: re.Pattern[str] | None = None
    status: tuple[str, ...] = ()  # "5.1.1" exactly, "5.7." any 5.7.X
    status_reason: tuple[str, ...] = ()
    not_status_reason: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    not_command: tuple[str, ...] = ()
    reply: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    weak: bool = False  # only when the status code says nothing definite
    has_code: bool | None = None  # the report gives a status or reply code (or gives none)
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class _Codes:
    """A provider's published error codes (``[[codes]]``)."""

    domains: tuple[str, ...]
    pattern: re.Pattern[str]
    prefixes: tuple[tuple[str, str], ...]  # (code prefix, reason), longest first
    ranges: tuple[tuple[int, int, str], ...]

    def reason(self, text: str) -> str:
        m = self.pattern.search(text)
        if m is None:
            return ""
        code = m.group(1).upper()
        for prefix, reason in self.prefixes:
            if code.startswith(prefix):
                return reason
        if code.isdigit():
            for first, last, reason in self.ranges:
                if first <= int(code) <= last:
                    return reason
        return ""


def _at(names: tuple[str, ...], domains: tuple[str, ...]) -> bool:
    return any(n == d or n.endswith("." + d) for d in domains for n in names if n)


@dataclass(frozen=True, slots=True)
class _Case:
    """One finding as the rules see it."""

    status: str
    status_reason: str
    text: str
    wide: str  # the diagnostic and the bounce's own text: carriers explain in the preamble
    command: str
    reply: str
    domain: str
    host: str  # the remote MTA's name (Remote-MTA, else the host the diagnostic names), "" unknown
    weak: bool
    has_code: bool


_CONTINUATION = re.compile(r"(?<![\w.-])[45]\d\d-(?:[245]\.\d{1,3}\.\d{1,3} ?)?")


def _host(remote_mta: str) -> str:
    """``dns; mfsmax.docomo.ne.jp [203.0.113.1]`` → ``mfsmax.docomo.ne.jp``."""
    words = remote_mta.rpartition(";")[2].split()
    return words[0].strip("[]").rstrip(".").lower() if words else ""


# Postfix's "host mx.example.net[192.0.2.1] said:", Exim's "host mx.example.net [192.0.2.1]:"
_SAID_HOST = re.compile(r"\bhost ([a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)+)\.? ?\[", re.I)


def _said_host(diagnostic: str) -> str:
    """The host a diagnostic names as the one that answered, when no Remote-MTA says it."""
    m = _SAID_HOST.search(diagnostic)
    return m.group(1).lower() if m else ""


def _status_match(status: str, codes: tuple[str, ...]) -> bool:
    return any(status.startswith(c) if c.endswith(".") else status == c for c in codes)


@dataclass(frozen=True, slots=True)
class Rules:
    reasons: dict[str, dict[str, Any]]
    rules: tuple[_Rule, ...]
    phrases: dict[str, tuple[re.Pattern[str] | None, re.Pattern[str] | None]]
    status_table: dict[str, str]
    retry: frozenset[str]  # status meanings too generic to stop at (Sisimai's "retry" set)
    codes: tuple[_Codes, ...] = ()

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> Rules:
        data = tomllib.loads(path.read_text())
        reasons = data["reasons"]
        missing = {r.value for r in BounceReason} - set(reasons) if path == RULES_FILE else set()
        if missing:
            raise ValueError(f"{path}: no [reasons.X] for {sorted(missing)}")
        for name, meta in reasons.items():
            if meta.get("suppress") not in POLICIES:
                raise ValueError(f"{path}: reason {name}: suppress must be one of {list(POLICIES)}")
        phrases = {}
        exceptions = data.get("phrases_not", {})
        for name, patterns in data.get("phrases", {}).items():
            if name not in reasons:
                raise ValueError(f"{path}: phrases for unknown reason {name}")
            phrases[name] = (_compile(patterns), _compile(exceptions.get(name, [])))
        status_table = data.get("status", {})
        for code, reason in status_table.items():
            if reason not in reasons:
                raise ValueError(f"{path}: status {code} means unknown reason {reason}")
        rules = []
        for r in data["rules"]:
            if r["reason"] not in reasons:
                raise ValueError(f"{path}: rule for unknown reason {r['reason']}")
            for name in (*r.get("phrases", ()), *r.get("unless", ())):
                if name not in phrases:
                    raise ValueError(f"{path}: rule for {r['reason']} names no phrases {name}")
            rules.append(
                _Rule(
                    reason=r["reason"],
                    text=_compile(r.get("text", [])),
                    phrases=tuple(r.get("phrases", ())),
                    unless=tuple(r.get("unless", ())),
                    not_text=_compile(r.get("not_text", [])),
                    status=tuple(r.get("status", ())),
                    status_reason=tuple(r.get("status_reason", ())),
                    not_status_reason=tuple(r.get("not_status_reason", ())),
                    command=tuple(r.get("command", ())),
                    not_command=tuple(r.get("not_command", ())),
                    reply=tuple(str(x) for x in r.get("reply", ())),
                    domains=tuple(r.get("domains", ())),
                    weak=bool(r.get("weak", False)),
                    has_code=r.get("has_code"),
                    ambiguous=bool(r.get("ambiguous", False)),
                )
            )
        retry = frozenset(data.get("settings", {}).get("retry", ()))
        codes = []
        for c in data.get("codes", ()):
            meanings = [*c.get("map", {}).values(), *(r[2] for r in c.get("ranges", ()))]
            if unknown := set(meanings) - set(reasons):
                raise ValueError(f"{path}: codes of {c['source']} mean unknown {sorted(unknown)}")
            codes.append(
                _Codes(
                    domains=tuple(c["domains"]),
                    pattern=re.compile(c["pattern"]),
                    prefixes=tuple(sorted(c.get("map", {}).items(), key=lambda kv: -len(kv[0]))),
                    ranges=tuple((int(a), int(b), str(r)) for a, b, r in c.get("ranges", ())),
                )
            )
        return cls(reasons, tuple(rules), phrases, status_table, retry, tuple(codes))

    # -- policy ----------------------------------------------------------------------------

    def policy(self, reason: str, status: str, ambiguous: bool = False) -> tuple[bool, bool | str]:
        """Hard or soft, and the suppression policy, from the reason and the code: a reason
        marked ``hard = "5xx"`` is hard only with a permanent code; a reason that suppresses at
        once does so only after repeats when the code is temporary or the verdict ambiguous."""
        meta = self.reasons[reason]
        hard = meta["hard"]
        if hard == "5xx":
            hard = not status.startswith("4")
        suppress = POLICIES[meta["suppress"]]
        if suppress is True and reason != FEEDBACK and (status.startswith("4") or ambiguous):
            suppress = "repeated"
        return bool(hard), suppress

    def verdict(
        self, recipient: str, reason: str, status: str, diagnostic: str, ambiguous: bool = False
    ) -> Verdict:
        hard, suppress = self.policy(reason, status, ambiguous)
        return Verdict(recipient, str(reason), hard, suppress, status, diagnostic, ambiguous)

    # -- matching --------------------------------------------------------------------------

    def _phrase(self, name: str, text: str) -> bool:
        pattern, exception = self.phrases.get(name, (None, None))
        if exception is not None and exception.search(text):
            return False
        return bool(pattern and pattern.search(text))

    def _matches(self, rule: _Rule, case: _Case) -> bool:
        if rule.domains and not _at((case.domain, case.host), rule.domains):
            return False  # the recipient's domain, or the host that answered for it
        text = case.wide if rule.domains else case.text
        if rule.weak and not case.weak:
            return False
        if rule.has_code is not None and rule.has_code != case.has_code:
            return False
        if rule.status and not _status_match(case.status, rule.status):
            return False
        if rule.status_reason and case.status_reason not in rule.status_reason:
            return False
        if rule.not_status_reason and case.status_reason in rule.not_status_reason:
            return False
        if rule.command and case.command not in rule.command:
            return False
        if rule.not_command and case.command in rule.not_command:
            return False
        if rule.reply and not any(case.reply.startswith(r) for r in rule.reply):
            return False
        if rule.not_text and rule.not_text.search(text):
            return False
        if any(self._phrase(name, text) for name in rule.unless):
            return False
        if rule.text or rule.phrases:
            return bool(
                (rule.text and rule.text.search(text))
                or any(self._phrase(name, text) for name in rule.phrases)
            )
        return True

    def reason_of(self, finding: Finding) -> tuple[str, bool]:
        """The reason of one finding, and whether the rule that found it marks it ambiguous."""
        if (
            finding.hint
            and finding.hint in self.reasons
            and finding.hint not in (ONHOLD, UNDEFINED)
        ):
            return finding.hint, False
        status = finding.status
        if status.startswith("2."):
            return DELIVERED, False
        status_reason = self.status_table.get(status, "")
        reply = str(finding.reply_code or "")
        # A multi-line reply read as one: "... at a rate that 550-5.2.1 prevents additional".
        text = _CONTINUATION.sub("", " ".join(finding.diagnostic.split()))
        case = _Case(
            status=status,
            status_reason=status_reason,
            text=text,
            wide=f"{text} {finding.context}",
            command=(finding.command or find_command(finding.diagnostic)).upper(),
            reply=reply,
            domain=finding.recipient.rpartition("@")[2].lower(),
            host=_host(finding.remote_mta) or _said_host(finding.diagnostic),
            has_code=bool(finding.status or finding.reply_code),
            weak=(not status_reason or status_reason in self.retry)
            or finding.diagnostic_type not in ("", "SMTP"),
        )
        if finding.action == "delayed" and finding.diagnostic_type not in ("", "SMTP"):
            # The sending MTA's own word (X-Postfix ...) on a mail still queued: no remote
            # reply to read a reason from, so Sisimai files the delay itself as expired,
            # unless the words name a network fault (no route to host, a routing loop),
            # which Sisimai reads from the text first as it does for any other reason.
            if self._phrase("networkerror", text):
                return "networkerror", False
            return "expired", False
        for codes in self.codes:
            if _at((case.domain, case.host), codes.domains) and (found := codes.reason(text)):
                return found, False
        for rule in self.rules:
            if self._matches(rule, case):
                return rule.reason, rule.ambiguous
        if status_reason:
            return status_reason, False
        if status[2:4] == "6.":
            return "contenterror", False
        if status[2:4] == "7.":
            return "securityerror", False
        if finding.diagnostic_type.startswith("X-UNIX"):
            return "mailererror", False
        if finding.action in ("delayed", "expired") or status.startswith("4"):
            return "expired", False  # a temporary failure that ended in a bounce: retried out
        if case.command == "HELO":
            return "blocked", False
        return (ONHOLD if text else UNDEFINED), False

    def classify_finding(self, finding: Finding) -> Verdict:
        reason, ambiguous = self.reason_of(finding)
        status = finding.status
        if not status:  # the class at least: from the reply, else a failure report is final
            first = str(finding.reply_code or "")[:1]
            status = f"{first or ('4' if finding.action == 'delayed' else '5')}.0.0"
        return self.verdict(finding.recipient, reason, status, finding.diagnostic, ambiguous)

    def classify(self, report: Report) -> list[Verdict]:
        if report.kind is Kind.COMPLAINT:
            return [
                self.verdict(f.recipient, FEEDBACK, "", report.feedback_type)
                for f in report.findings
            ]
        if report.kind is Kind.AUTO_REPLY:
            return [self.verdict(f.recipient, VACATION, "", f.diagnostic) for f in report.findings]
        if report.kind is Kind.DELIVERED:
            return [
                self.verdict(f.recipient, DELIVERED, f.status, f.diagnostic)
                for f in report.findings
            ]
        return [self.classify_finding(f) for f in report.findings]


@cache
def rules() -> Rules:
    return Rules.load()
