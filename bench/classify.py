"""The bounce classifier against a labelled corpus: precision and recall per reason.

    python -m bench.classify [--corpus DIR] [--errors]

Two corpus layouts are read. The default, ``tests/corpus/bounces`` in this repository, is
labelled with Hato's reason names (``labels.tsv``: file, reason, ...; the ``.eml`` files
beside it). A larger corpus labelled with Sisimai's reason names (``labels.tsv`` with
``expected_reason``, the files in ``eml/``), such as the 154 real bounces the team keeps
beside the checkout in ``../shared/corpus/bounces``, is given with ``--corpus``;
``SISIMAI`` maps its names onto Hato's. Each recipient of each message is one case (a
message that is not a bounce is one case, labelled ``not-a-bounce``).
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from services.bounce.classify import rules
from services.bounce.parse import Kind, parse

SISIMAI = {
    "userunknown": "user_unknown",
    "mailboxfull": "mailbox_full",
    "hostunknown": "host_unknown",
    "notaccept": "host_unknown",
    "suspend": "suspended",
    "filtered": "filtered",
    "blocked": "blocked",
    "badreputation": "blocked",
    "requireptr": "blocked",
    "authfailure": "blocked",
    "securityerror": "blocked",
    "policyviolation": "blocked",
    "norelaying": "blocked",
    "rejected": "blocked",
    "spamdetected": "spam_filtered",
    "virusdetected": "spam_filtered",
    "contenterror": "content_rejected",
    "notcompliantrfc": "content_rejected",
    "exceedlimit": "message_too_large",
    "toomanyconn": "rate_limited",
    "speeding": "rate_limited",
    "expired": "expired",
    "vacation": "auto_reply",
    "feedback": "complaint",
    "not-a-bounce": "not-a-bounce",
}
DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus" / "bounces"


def predictions(path: Path) -> list[str]:
    report = parse(path.read_bytes())
    if report.kind is Kind.NOT_A_BOUNCE:
        return ["not-a-bounce"]
    return [v.reason for v in rules().classify(report)]


def evaluate(corpus: Path) -> tuple[list[tuple[str, str, str]], Counter]:
    cases: list[tuple[str, str, str]] = []  # (file, expected, predicted)
    with (corpus / "labels.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if "expected_reason" in row:  # Sisimai's names, files in eml/
                expected = [SISIMAI.get(r, "other") for r in row["expected_reason"].split("|")]
                predicted = predictions(corpus / "eml" / row["file"])
            else:  # Hato's names, files beside labels.tsv
                expected = [row["reason"]]
                predicted = predictions(corpus / row["file"])
            for i, exp in enumerate(expected):
                cases.append((row["file"], exp, predicted[i] if i < len(predicted) else "none"))
    return cases, Counter(exp for _, exp, _ in cases)


def main(corpus: Path, show_errors: bool) -> None:
    cases, support = evaluate(corpus)
    predicted = Counter(p for _, _, p in cases)
    right = Counter(e for _, e, p in cases if e == p)
    print(f"{len(cases)} recipients in {corpus}")
    print(f"{'reason':<18} {'n':>4} {'precision':>10} {'recall':>8}")
    for reason in sorted(set(support) | set(predicted), key=lambda r: -support[r]):
        p = right[reason] / predicted[reason] if predicted[reason] else 0.0
        r = right[reason] / support[reason] if support[reason] else 0.0
        print(f"{reason:<18} {support[reason]:>4} {p:>10.2f} {r:>8.2f}")
    print(f"accuracy {sum(right.values()) / len(cases):.2f}")
    if show_errors:
        for file, exp, pred in cases:
            if exp != pred:
                print(f"  {file}: expected {exp}, got {pred}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--errors", action="store_true", help="list the misclassified cases")
    a = parser.parse_args()
    if not (a.corpus / "labels.tsv").is_file():
        parser.error(f"no labelled corpus at {a.corpus} (it needs a labels.tsv)")
    main(a.corpus, a.errors)
