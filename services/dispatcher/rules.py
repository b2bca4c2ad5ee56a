"""Reply rules: what the dispatcher does by itself when receivers answer in a way that says
"slow down", "your IP is listed" or a carrier's throttling text.

A rule matches a reply by code, enhanced status code (a prefix: ``4.7.`` takes every 4.7.x),
a regular expression on the text and the provider (a provider group such as ``gmail`` or
``docomo``, or a destination domain); its action applies to the (source IP, provider) pair
the reply came from once ``threshold`` matching replies arrived within ``window`` seconds,
and ends by itself after ``duration`` seconds:

- ``slow_down``: the pace from that IP to that provider is kept at ``factor``;
- ``pause``: nothing is sent from that IP to that provider (the mail waits, attempts not
  counted);
- ``move_ip``: that IP is not used for that provider; another member of the pool takes the
  mail (its replies defer the recipients instead of bouncing them: the IP was refused, not
  the mailbox);
- ``bounce``: the recipient is bounced at once, even on a 4xx (at every matching reply).

Rules are read from the TOML file ``HATO_DISPATCHER_RULES_FILE`` (``[[rule]]`` tables), or
the ``rules`` table of the dispatcher's settings file, after the defaults below
(``default_rules = false`` leaves those out); the file is read again when it changes or on
SIGHUP. The first rule of each action that matches a reply counts it.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared import metrics
from shared.domains import walk_up
from shared.schemas import Reply


class RuleAction(StrEnum):
    SLOW_DOWN = "slow_down"
    PAUSE = "pause"
    MOVE_IP = "move_ip"
    BOUNCE = "bounce"


class Rule(BaseModel):
    """One rule of the rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=64, description="Shown in events.")]
    action: RuleAction = Field(description="slow_down, pause, move_ip or bounce.")
    codes: tuple[int, ...] = Field((), description="Reply codes it takes (none: any).")
    enhanced: str = Field("", description="Enhanced status code or its prefix ('4.7.').")
    text: str = Field("", description="Regular expression searched in the reply text (any case).")
    provider: str = Field(
        "", description="Provider group (gmail, outlook, docomo ...) or destination domain."
    )
    duration: float = Field(300, gt=0, description="Seconds the action lasts.")
    threshold: int = Field(1, ge=1, description="Matching replies that trigger it ...")
    window: float = Field(300, gt=0, description="... within this many seconds.")
    factor: float = Field(0.5, gt=0, le=1, description="slow_down: share of the pace kept.")

    @field_validator("codes")
    @classmethod
    def _codes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for code in value:
            if not 200 <= code <= 599:
                raise ValueError(f"{code} is not an SMTP reply code")
        return value

    @field_validator("text")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        return value.strip().lower().rstrip(".")

    def matches(self, reply: Reply, *, provider: str, domain: str) -> bool:
        if self.codes and reply.code not in self.codes:
            return False
        if self.enhanced and not reply.enhanced.startswith(self.enhanced):
            return False
        if self.provider and self.provider != provider:
            if self.provider not in walk_up(domain, top=True):
                return False
        return not (self.text and not _regex(self.text).search(reply.text))


_compiled: dict[str, re.Pattern[str]] = {}


def _regex(text: str) -> re.Pattern[str]:
    found = _compiled.get(text)
    if found is None:
        found = _compiled[text] = re.compile(text, re.IGNORECASE)
    return found


CARRIERS = ("docomo", "au", "softbank")
DEFAULT_RULES: tuple[Rule, ...] = (
    # Japanese carriers throttle with their own words, and hard: a quarter of the pace.
    *(
        Rule(
            name=f"carrier-throttling-{carrier}",
            action=RuleAction.SLOW_DOWN,
            codes=(421, 450, 451, 452),
            text=r"too many|exceeded|temporarily|try (again )?later|throttl|busy|tempfail"
            r"|connection (refused|rate)",
            provider=carrier,
            duration=900,
            factor=0.25,
        )
        for carrier in CARRIERS
    ),
    # A block list or the IP's reputation: the refusal is the IP's, not the mailbox's. The
    # text names the IP or the list ("Recipient not listed in the directory" must not match).
    Rule(
        name="ip-listed",
        action=RuleAction.MOVE_IP,
        codes=(421, 450, 451, 550, 553, 554),
        text=r"block ?list|black ?list|\bRBL\b|\bDNSBL\b|spamhaus|spamcop|barracuda"
        r"|client host .*\b(blocked|rejected) using|\bip\b.*\b(listed|blocked|reputation)"
        r"|poor reputation",
        duration=3600,
    ),
    Rule(
        name="sending-too-fast",
        action=RuleAction.SLOW_DOWN,
        codes=(421, 450, 451, 452),
        # Not "try again later" (greylisting says so) nor a bare "exceeded" (a full mailbox).
        text=r"too (many|fast)|rate ?limit|slow down|throttl|(rate|limit) exceeded"
        r"|exceeded (the|your|our) (rate|limit|sending)",
        duration=600,
        factor=0.5,
    ),
    Rule(
        name="sending-too-fast-pause",
        action=RuleAction.PAUSE,
        codes=(421, 450, 451, 452),
        text=r"too (many|fast)|rate ?limit|slow down|throttl|(rate|limit) exceeded"
        r"|exceeded (the|your|our) (rate|limit|sending)",
        duration=300,
        threshold=5,
        window=120,
    ),
)


class RulesFile(BaseModel):
    """What a rules file holds."""

    model_config = ConfigDict(extra="forbid")

    default_rules: bool = Field(True, description="Apply the built-in rules after these.")
    rule: list[Rule] = Field([], description="The rules, first match of each action wins.")


def load(path: str | Path) -> RulesFile:
    """Read a rules file; ValueError naming what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read rules file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"rules file {path}: {exc}") from None
    try:
        parsed = RulesFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ValueError(f"rules file {path}: {problems}") from None
    names = [r.name for r in parsed.rule]
    if len(set(names)) != len(names):
        raise ValueError(f"rules file {path}: a rule name is given twice")
    return parsed


def rule_set(given: Sequence[Rule], *, defaults: bool = True) -> tuple[Rule, ...]:
    """The rules in force: those given, then the defaults not overridden by name."""
    names = {r.name for r in given}
    return (*given, *(r for r in DEFAULT_RULES if defaults and r.name not in names))


@dataclass(frozen=True, slots=True)
class Trigger:
    """A rule's action starts for (source IP, provider) because of ``reply``."""

    rule: Rule
    source_ip: str
    provider: str
    reply: Reply


@dataclass
class Rules:
    """The rules in force and the count of matching replies per (rule, IP, provider)."""

    rules: tuple[Rule, ...] = DEFAULT_RULES
    clock: Any = time.monotonic
    _hits: dict[tuple[str, str, str], deque[float]] = field(default_factory=dict)
    _active: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _count_from_zero(self.rules)

    def replace(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        _count_from_zero(self.rules)
        names = {r.name for r in self.rules}
        self._hits = {k: v for k, v in self._hits.items() if k[0] in names}

    def matching(self, reply: Reply, *, provider: str, domain: str) -> list[Rule]:
        """The first matching rule of each action (in file order)."""
        if 200 <= reply.code < 300:
            return []
        found: dict[RuleAction, Rule] = {}
        for rule in self.rules:
            if rule.action not in found and rule.matches(reply, provider=provider, domain=domain):
                found[rule.action] = rule
        return list(found.values())

    def observe(
        self, source_ip: str, domain: str, provider: str, replies: Sequence[Reply]
    ) -> list[Trigger]:
        """Count these replies from ``source_ip`` to ``domain``; the actions that start now
        (their threshold reached within the window, and not already running)."""
        now = self.clock()
        key_provider = pair_provider(provider, domain)
        triggers: list[Trigger] = []
        for reply in replies:
            for rule in self.matching(reply, provider=provider, domain=domain):
                if rule.action is RuleAction.BOUNCE:
                    continue  # acts on the recipient, not on the pair
                key = (rule.name, source_ip, key_provider)
                if self._active.get(key, 0.0) > now:
                    continue
                hits = self._hits.setdefault(key, deque())
                hits.append(now)
                while hits and hits[0] <= now - rule.window:
                    hits.popleft()
                if len(hits) >= rule.threshold:
                    hits.clear()
                    self._active[key] = now + rule.duration
                    triggers.append(Trigger(rule, source_ip, key_provider, reply))
        return triggers

    def ended(self, rule: str, source_ip: str, provider: str) -> None:
        """The action of ``rule`` on the pair was ended (expired or lifted by an operator)."""
        self._active.pop((rule, source_ip, provider), None)

    def running(self, actions: set[tuple[str, str, str]]) -> None:
        """The (rule, IP, provider) actions in force now (from the store): any other this
        instance started has ended (lifted by an operator, or expired), and may start again."""
        self._active = {k: v for k, v in self._active.items() if k in actions}

    def verdict(self, reply: Reply, *, provider: str, domain: str) -> RuleAction | None:
        """What a reply does to its recipient: BOUNCE (bounced now), MOVE_IP or PAUSE
        (deferred, whatever the code: another IP or later will do), or None (as the code
        says)."""
        actions = {r.action for r in self.matching(reply, provider=provider, domain=domain)}
        for action in (RuleAction.BOUNCE, RuleAction.MOVE_IP, RuleAction.PAUSE):
            if action in actions:
                return action
        return None


def pair_provider(provider: str, domain: str) -> str:
    """What a rule's pair names as the provider: the provider group, or for a destination of
    no known group its domain (so one small receiver's 421 slows only mail to it)."""
    return provider if provider and provider != "other" else domain.lower().rstrip(".")


def _count_from_zero(rules: Iterable[Rule]) -> None:
    """Each rule in force has its started and ended counters from 0 on: a dashboard or an
    alert sees a rule that never fired as 0, not as no data."""
    for rule in rules:
        metrics.RULES_TRIGGERED.labels(rule.name, rule.action.value)
        metrics.RULES_ENDED.labels(rule.name, rule.action.value)
