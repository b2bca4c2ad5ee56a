"""Reply rules: matching by code, enhanced code, text and provider; thresholds within a
window; actions that end; what a reply does to its recipient; the rules file."""

from __future__ import annotations

import pytest

from services.dispatcher.rules import (
    DEFAULT_RULES,
    Rule,
    RuleAction,
    Rules,
    load,
    pair_provider,
    rule_set,
)
from shared.schemas import Reply


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rule(**fields) -> Rule:
    return Rule(**{"name": "r", "action": "pause", **fields})


def test_a_rule_matches_by_code_enhanced_prefix_text_and_provider() -> None:
    """Every given field must hold: codes listed, enhanced code by prefix, the text regex in
    any case, the provider group or a parent domain of the destination."""
    r = rule(codes=(421,), enhanced="4.7.", text="too many", provider="gmail")
    hit = Reply.of(421, "4.7.0", "Too Many messages")
    assert r.matches(hit, provider="gmail", domain="gmail.com")
    assert not r.matches(Reply.of(450, "4.7.0", "too many"), provider="gmail", domain="gmail.com")
    assert not r.matches(Reply.of(421, "4.2.0", "too many"), provider="gmail", domain="gmail.com")
    assert not r.matches(Reply.of(421, "4.7.0", "later"), provider="gmail", domain="gmail.com")
    assert not r.matches(hit, provider="other", domain="example.com")
    by_domain = rule(provider="example.com")
    assert by_domain.matches(hit, provider="other", domain="mx.EXAMPLE.com")
    assert rule().matches(Reply.of(550, "", "anything"), provider="other", domain="a.test")


def test_a_threshold_counts_replies_within_its_window_per_ip_and_provider() -> None:
    """Three hits within the window trigger once; hits of another IP or provider count apart,
    and hits older than the window are forgotten."""
    clock = Clock()
    rules = Rules((rule(threshold=3, window=60, text="slow"),), clock=clock)
    slow = [Reply.of(421, "4.7.0", "slow down")]
    assert rules.observe("10.0.0.1", "a.test", "other", slow) == []
    assert rules.observe("10.0.0.2", "a.test", "other", slow) == []
    assert rules.observe("10.0.0.1", "b.test", "other", slow) == []
    clock.now += 61  # the first hit is out of the window now
    assert rules.observe("10.0.0.1", "a.test", "other", slow) == []
    assert rules.observe("10.0.0.1", "a.test", "other", slow) == []
    [trigger] = rules.observe("10.0.0.1", "a.test", "other", slow)
    assert (trigger.source_ip, trigger.provider, trigger.rule.name) == ("10.0.0.1", "a.test", "r")


def test_an_action_runs_once_until_it_ends_then_can_trigger_again() -> None:
    """While a rule's action runs for a pair it does not trigger again; after its duration,
    or once ended, the next matching reply triggers it anew."""
    clock = Clock()
    rules = Rules((rule(duration=10),), clock=clock)
    reply = [Reply.of(421, "4.7.0", "x")]
    assert len(rules.observe("ip", "a.test", "other", reply)) == 1
    assert rules.observe("ip", "a.test", "other", reply) == []
    clock.now += 11
    assert len(rules.observe("ip", "a.test", "other", reply)) == 1
    rules.ended("r", "ip", "a.test")
    assert len(rules.observe("ip", "a.test", "other", reply)) == 1


def test_successes_never_match_and_the_first_rule_of_each_action_counts() -> None:
    """A 2xx matches no rule; of two rules with one action the first in file order wins,
    while a rule with another action counts too."""
    first = rule(name="first", action="slow_down")
    second = rule(name="second", action="slow_down")
    pause = rule(name="pause", action="pause")
    rules = Rules((first, second, pause))
    assert rules.matching(Reply.of(250, "2.0.0", "ok"), provider="other", domain="a.test") == []
    found = rules.matching(Reply.of(421, "", "x"), provider="other", domain="a.test")
    assert [r.name for r in found] == ["first", "pause"]


def test_a_reply_refusing_the_ip_defers_the_recipient_and_bounce_rules_bounce() -> None:
    """An IP-listed 550 is the IP's refusal (move_ip: deferred, not bounced); a bounce rule
    bounces even a 4xx; a plain 550 is left to its code."""
    rules = Rules(rule_set([rule(name="gone", action="bounce", codes=(452,), text="disabled")]))
    listed = Reply.of(550, "5.7.1", "Client host blocked using zen.spamhaus.org; IP listed")
    assert rules.verdict(listed, provider="other", domain="a.test") is RuleAction.MOVE_IP
    disabled = Reply.of(452, "4.2.2", "mailbox disabled")
    assert rules.verdict(disabled, provider="other", domain="a.test") is RuleAction.BOUNCE
    unknown = Reply.of(550, "5.1.1", "no such user")
    assert rules.verdict(unknown, provider="other", domain="a.test") is None


@pytest.mark.parametrize(
    ("reply", "provider", "actions"),
    [
        (Reply.of(421, "4.7.0", "Too many messages, slow down"), "other", {"slow_down"}),
        (Reply.of(421, "4.7.28", "rate limited, try again later"), "gmail", {"slow_down"}),
        (
            Reply.of(550, "5.7.1", "Your IP is listed in the Spamhaus block list"),
            "other",
            {"move_ip"},
        ),
        (Reply.of(421, "4.7.0", "Too many connections from your IP"), "docomo", {"slow_down"}),
        (Reply.of(450, "4.7.1", "Tempfail: exceeded the limit"), "au", {"slow_down"}),
        (Reply.of(550, "5.1.1", "User unknown"), "other", set()),
        (Reply.of(550, "5.1.1", "Recipient not listed in public directory"), "other", set()),
        (Reply.of(450, "4.2.0", "Greylisted, please try again later"), "other", set()),
        (Reply.of(452, "4.2.2", "Mailbox quota exceeded"), "other", set()),
        (Reply.of(421, "4.7.0", "Message rate limit exceeded"), "yahoo", {"slow_down"}),
        (Reply.of(451, "4.3.0", "Local error"), "other", set()),
    ],
)
def test_the_built_in_rules_know_the_common_replies(reply, provider, actions) -> None:
    """ "Too fast", "IP listed" and the carriers' throttling texts match a built-in rule;
    a missing mailbox or a receiver's own trouble match none."""
    found = Rules(DEFAULT_RULES).matching(reply, provider=provider, domain="x.test")
    assert {r.action.value for r in found} - {"pause"} == actions


def test_the_pair_names_a_provider_group_or_the_domain() -> None:
    """A known provider group keys the pair; any other receiver is keyed by its domain."""
    assert pair_provider("gmail", "googlemail.com") == "gmail"
    assert pair_provider("other", "Shop.Example.") == "shop.example"


def test_the_rules_file_is_read_checked_and_overrides_built_ins_by_name(tmp_path) -> None:
    """A rules file's rules come first and replace built-ins of the same name; default_rules
    = false leaves the built-ins out; a bad regex, code, action or twice-given name is
    refused with the file and field named."""
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rule]]\nname = "ip-listed"\naction = "pause"\ntext = "listed"\nduration = 5\n'
    )
    parsed = load(path)
    rules = rule_set(parsed.rule, defaults=parsed.default_rules)
    assert rules[0].action is RuleAction.PAUSE and rules[0].duration == 5
    assert [r.name for r in rules].count("ip-listed") == 1 and len(rules) == len(DEFAULT_RULES)
    path.write_text('default_rules = false\n[[rule]]\nname = "a"\naction = "bounce"\n')
    assert [r.name for r in rule_set(load(path).rule, defaults=False)] == ["a"]
    for bad, says in (
        ('[[rule]]\nname = "a"\naction = "pause"\ntext = "("\n', "regular expression"),
        ('[[rule]]\nname = "a"\naction = "pause"\ncodes = [99]\n', "not an SMTP reply code"),
        ('[[rule]]\nname = "a"\naction = "explode"\n', "rule.0.action"),
        (
            '[[rule]]\nname = "a"\naction = "pause"\n[[rule]]\nname = "a"\naction = "pause"\n',
            "twice",
        ),
        ("[[rule]\n", "rules file"),
    ):
        path.write_text(bad)
        with pytest.raises(ValueError, match=says):
            load(path)
    with pytest.raises(ValueError, match="cannot read"):
        load(tmp_path / "missing.toml")
