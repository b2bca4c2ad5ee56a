"""``bench.compare --rounds N``: a throughput workload runs as N parts with the systems taking
turns (A B, B A, ...); a workload's figures are the medians of its parts, and Hato / Postfix
is also given part by part, where the machine's drift cancels out."""

from __future__ import annotations

import pytest

from bench.compare import Figures, Workload, combined, paired, parse, rounds_of, turns


def part(delivered_per_s: float, cpu: float, *, p99: float = 50.0, rss: float = 100.0) -> Figures:
    return Figures(
        accepted=1000,
        delivered=1000,
        signed=1000,
        accepted_per_s=delivered_per_s,
        delivered_per_s=delivered_per_s,
        accept_p50_ms=10.0,
        accept_p99_ms=p99,
        e2e_p50_ms=20.0,
        e2e_p99_ms=p99,
        peak_rss_mb=rss,
        rss_by_process_mb={"ingest": rss / 2},
        cpu_ms_per_msg=cpu,
        cpu_ms_per_msg_by_process={"ingest": cpu / 2, "signer": cpu / 2},
        rejected=1,
        wall_s=5.0,
    )


def test_a_throughput_workload_is_cut_into_equal_rounds_and_a_steady_one_is_not() -> None:
    """N rounds of messages / N each; one round, or a steady workload, stays whole."""
    work = Workload("throughput-1k", 1024, messages=4000, concurrency=20)
    assert [w.messages for w in rounds_of(work, 4)] == [1000] * 4
    assert rounds_of(work, 1) == [work]
    steady = Workload("steady", 1024, rate=50, duration=60)
    assert rounds_of(steady, 4) == [steady]


def test_the_systems_take_turns_in_alternating_order() -> None:
    """A B, then B A: a machine that speeds up or slows down weighs on both alike."""
    assert [turns(["hato", "postfix"], r) for r in range(3)] == [
        ["hato", "postfix"],
        ["postfix", "hato"],
        ["hato", "postfix"],
    ]
    assert turns(["hato"], 1) == ["hato"]


def test_rounds_combine_into_medians_sums_and_peaks() -> None:
    """Counts add up, peaks take the largest, rates, latencies and CPU the median; each
    round's throughput and CPU are kept."""
    f = combined([part(100, 10.0, p99=40), part(140, 8.0, p99=90, rss=300), part(120, 30.0)])
    assert (f.accepted, f.delivered, f.rejected, f.wall_s) == (3000, 3000, 3, 15.0)
    assert (f.delivered_per_s, f.cpu_ms_per_msg, f.e2e_p99_ms) == (120, 10.0, 50.0)
    assert f.cpu_ms_per_msg_by_process == {"ingest": 5.0, "signer": 5.0}
    assert (f.peak_rss_mb, f.rss_by_process_mb) == (300, {"ingest": 150})
    assert [r["cpu_ms_per_msg"] for r in f.rounds] == [10.0, 8.0, 30.0]
    one = part(100, 10.0)
    assert combined([one]) is one


def test_hato_over_postfix_is_given_round_by_round() -> None:
    """Each round's ratio pairs the two systems' parts of that round; without both systems,
    or without rounds, there is none."""
    results = {
        "hato": {"w": combined([part(100, 12.0), part(150, 9.0)])},
        "postfix": {"w": combined([part(125, 10.0), part(120, 12.0)])},
    }
    assert paired(results, "w", "delivered_per_s") == [0.8, 1.25]
    assert paired(results, "w", "cpu_ms_per_msg") == [1.2, 0.75]
    assert paired({"hato": results["hato"]}, "w", "cpu_ms_per_msg") == []


def test_rounds_must_be_one_or_more() -> None:
    """``--rounds 0`` is refused; the default is one round, the whole workload at once."""
    assert parse([]).rounds == 1
    with pytest.raises(SystemExit):
        parse(["--rounds", "0"])
