"""Classifying bounces by the data-driven rules of ``reasons.toml``: each finding gets a
reason, hard or soft, whether it suppresses the recipient, and whether the verdict is
ambiguous. Synchronous results from the dispatcher go through the same rules."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from services.bounce.parse import Finding, Kind, Report

RULES_FILE = Path(__file__).with_name("reasons.toml")


@dataclass(frozen=True, slots=True)
class Verdict:
    recipient: str
    reason: str
    hard: bool
    suppress: bool | str  # True, False, or "repeated"
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


@dataclass(frozen=True, slots=True)
class _Rule:
    reason: str
    status: tuple[str, ...]
    text: re.Pattern[str] | None
    domains: tuple[str, ...]
    ambiguous: bool

    def matches(self, status: str, text: str, domain: str, context: str = "") -> bool:
        if self.domains:
            if not any(domain == d or domain.endswith("." + d) for d in self.domains):
                return False
            text = f"{text} {context}"  # carriers explain in the bounce's preamble
        if self.status and not any(status.startswith(s) for s in self.status):
            return False
        return not (self.text and not self.text.search(text))


@dataclass(frozen=True, slots=True)
class Rules:
    reasons: dict[str, dict[str, Any]]
    rules: tuple[_Rule, ...]

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> Rules:
        data = tomllib.loads(path.read_text())
        rules = []
        for r in data["rules"]:
            if r["reason"] not in data["reasons"]:
                raise ValueError(f"{path}: rule for unknown reason {r['reason']}")
            text = (
                re.compile("|".join(f"(?:{t})" for t in r["text"]), re.I) if r.get("text") else None
            )
            rules.append(
                _Rule(
                    r["reason"],
                    tuple(r.get("status", ())),
                    text,
                    tuple(r.get("domains", ())),
                    bool(r.get("ambiguous", False)),
                )
            )
        return cls(data["reasons"], tuple(rules))

    def verdict(
        self, recipient: str, reason: str, status: str, diagnostic: str, ambiguous: bool = False
    ) -> Verdict:
        meta = self.reasons[reason]
        return Verdict(
            recipient, reason, bool(meta["hard"]), meta["suppress"], status, diagnostic, ambiguous
        )

    def classify_finding(self, finding: Finding) -> Verdict:
        domain = finding.recipient.rpartition("@")[2].lower()
        status = finding.status
        if not status and finding.reply_code:
            status = f"{str(finding.reply_code)[0]}.0.0"
        text = finding.diagnostic
        for rule in self.rules:
            if rule.matches(status, text, domain, finding.context):
                return self.verdict(finding.recipient, rule.reason, status, text, rule.ambiguous)
        return self.verdict(finding.recipient, "other", status, text)

    def classify(self, report: Report) -> list[Verdict]:
        if report.kind is Kind.COMPLAINT:
            return [
                self.verdict(f.recipient, "complaint", "", report.feedback_type)
                for f in report.findings
            ]
        if report.kind is Kind.AUTO_REPLY:
            return [
                self.verdict(f.recipient, "auto_reply", "", f.diagnostic) for f in report.findings
            ]
        return [self.classify_finding(f) for f in report.findings]


@cache
def rules() -> Rules:
    return Rules.load()
